-- name: CopyBooks :transfer mode=upsert key=id batch=2
INSERT INTO {books_copy} (id, author_id, title, price, published)
SELECT id, author_id, title, price, published FROM {books} WHERE price > 0;

-- name: CopyAuthors :transfer mode=append key=id batch=2
INSERT INTO {authors_copy}
SELECT id, name, bio, born, rating, active, score, balance, meta, avatar, uid, created_at, seen_at,
       wake_at
FROM {authors};
