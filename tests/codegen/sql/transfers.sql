-- name: CopyBooks :transfer mode=upsert key=id batch=2
INSERT INTO {books_copy} (id, author_id, title, price, published)
SELECT id, author_id, title, price, published FROM {books} WHERE price > 0;
