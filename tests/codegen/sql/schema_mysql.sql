CREATE TABLE {authors} (
  id BIGINT PRIMARY KEY,
  name TEXT NOT NULL,
  bio TEXT,
  born DATE,
  rating DOUBLE,
  active BOOLEAN NOT NULL,
  score INT,
  balance DECIMAL(12,2),
  meta JSON,
  avatar BLOB,
  uid UUID NOT NULL,
  created_at DATETIME(6) NOT NULL,
  seen_at DATETIME(6),
  wake_at TIME(6)
);
CREATE TABLE {books} (
  id BIGINT PRIMARY KEY,
  author_id BIGINT NOT NULL,
  title TEXT NOT NULL,
  price DECIMAL(10,2) NOT NULL,
  published DATE
);
CREATE TABLE {books_copy} (
  id BIGINT PRIMARY KEY,
  author_id BIGINT NOT NULL,
  title TEXT NOT NULL,
  price DECIMAL(10,2) NOT NULL,
  published DATE
);
CREATE TABLE {authors_copy} LIKE {authors};
