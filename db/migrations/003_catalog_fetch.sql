-- The catalog's bookkeeping for filling movie and user metadata from the info API: how often a
-- row was tried, why the last try failed, and when to try again (a 404 waits long, a 5xx short),
-- so a missing id is retried rarely and never holds up the rest.
ALTER TABLE movies
  ADD COLUMN fetch_attempts integer NOT NULL DEFAULT 0,
  ADD COLUMN last_error     text,
  ADD COLUMN next_fetch_at  timestamptz;
ALTER TABLE users
  ADD COLUMN fetch_attempts integer NOT NULL DEFAULT 0,
  ADD COLUMN last_error     text,
  ADD COLUMN next_fetch_at  timestamptz;

-- The catalog's work queue: only unfetched rows, oldest first.
CREATE INDEX movies_unfetched_idx ON movies (first_seen_at) WHERE fetched_at IS NULL;
CREATE INDEX users_unfetched_idx ON users (first_seen_at) WHERE fetched_at IS NULL;
