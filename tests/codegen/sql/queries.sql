-- The suite the codegen tests compile and run in every language (PostgreSQL dialect;
-- the MariaDB runs use its transpilation). Table names in braces are replaced by the tests.

-- name: GetAuthor :one
SELECT id, name, bio, born, rating, active, score, balance, meta, avatar, uid, created_at, seen_at,
       wake_at
FROM {authors}
WHERE id = :id;

-- name: ListAuthorsFiltered :many
SELECT id, name, balance, uid
FROM {authors}
WHERE born >= :born_after AND active = :active AND balance > :min_balance AND uid <> :not_uid
ORDER BY id;

-- name: AuthorsWithBooks :many
SELECT a.id, a.name, count(b.id) AS books, sum(b.price) AS total, max(b.published) AS latest
FROM {authors} a
LEFT JOIN {books} b ON b.author_id = a.id
GROUP BY a.id, a.name
ORDER BY a.id;

-- name: TopAuthors :many
WITH totals AS (
  SELECT author_id, sum(price) AS total FROM {books} GROUP BY author_id
)
SELECT a.name, t.total, a.rating
FROM totals t
JOIN {authors} a ON a.id = t.author_id
WHERE t.total > $1
ORDER BY t.total DESC, a.name
LIMIT $2;

-- name: AuthorsByNumbers :many
SELECT id, score, rating
FROM {authors}
WHERE score = :score OR rating > :min_rating
ORDER BY id;

-- name: AuthorsCreatedBetween :many
SELECT id, created_at, seen_at
FROM {authors}
WHERE created_at BETWEEN :start AND :stop
ORDER BY id;

-- name: AuthorsAwakeBefore :many
SELECT id, wake_at FROM {authors} WHERE wake_at < :wake ORDER BY id;

-- name: AuthorsByAvatar :many
SELECT id, avatar FROM {authors} WHERE avatar = :avatar ORDER BY id;

-- name: CountBooks :one
SELECT count(*) AS n FROM {books} WHERE author_id = :author_id;

-- name: CreateBook :exec nullable=published
INSERT INTO {books} (id, author_id, title, price, published)
VALUES (:id, :author_id, :title, :price, :published);

-- name: SetAuthorMeta :execrows nullable=avatar
UPDATE {authors} SET meta = :meta, seen_at = :seen_at, avatar = :avatar WHERE id = :id;
