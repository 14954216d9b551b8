CREATE TABLE authors (
  id bigint PRIMARY KEY,
  name text NOT NULL,
  bio text,
  born date,
  rating double precision,
  active boolean NOT NULL,
  score integer,
  balance numeric(12,2),
  meta jsonb,
  avatar bytea,
  uid uuid NOT NULL,
  created_at timestamp NOT NULL,
  seen_at timestamptz
);
CREATE TABLE books (
  id bigint PRIMARY KEY,
  author_id bigint NOT NULL,
  title text NOT NULL,
  price numeric(10,2) NOT NULL,
  published date
);
CREATE TABLE books_copy (
  id bigint PRIMARY KEY,
  author_id bigint NOT NULL,
  title text NOT NULL,
  price numeric(10,2) NOT NULL,
  published date
);
