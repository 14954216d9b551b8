-- name: GetAuthor :one
SELECT id, name, bio, born, balance, meta, uid, created_at
FROM authors
WHERE id = :id;

-- name: TopAuthors :many
WITH totals AS (SELECT author_id, sum(price) AS total FROM books GROUP BY author_id)
SELECT a.name, t.total
FROM totals t JOIN authors a ON a.id = t.author_id
WHERE t.total > $1
ORDER BY t.total DESC
LIMIT $2;

-- name: RenameAuthor :execrows
UPDATE authors SET name = :name WHERE id = :id;
