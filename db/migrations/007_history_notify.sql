-- Inference slots keep users' histories in memory (services/inference/history-cache.ts) and must
-- drop one as soon as it changes: every statement that changes what readHistory would return
-- sends the users it touched on channel marquee_history (comma-separated ids, in chunks under the
-- 8,000-byte payload limit; '*' = all users). Statement-level with transition tables: one trigger
-- run per ingest batch, not one per row.

CREATE FUNCTION marquee_notify_history(users integer[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  i integer := 1;
  n integer := coalesce(array_length(users, 1), 0);
BEGIN
  WHILE i <= n LOOP
    PERFORM pg_notify('marquee_history', array_to_string(users[i:i + 599], ','));
    i := i + 600;
  END LOOP;
END
$$;

CREATE FUNCTION marquee_history_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM marquee_notify_history(ARRAY(SELECT DISTINCT user_id FROM changed));
  RETURN NULL;
END
$$;

CREATE FUNCTION marquee_history_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('marquee_history', '*');
  RETURN NULL;
END
$$;

CREATE TRIGGER watches_history_insert AFTER INSERT ON watches REFERENCING NEW TABLE AS changed
  FOR EACH STATEMENT EXECUTE FUNCTION marquee_history_changed();
CREATE TRIGGER watches_history_update AFTER UPDATE ON watches REFERENCING NEW TABLE AS changed
  FOR EACH STATEMENT EXECUTE FUNCTION marquee_history_changed();
CREATE TRIGGER watches_history_delete AFTER DELETE ON watches REFERENCING OLD TABLE AS changed
  FOR EACH STATEMENT EXECUTE FUNCTION marquee_history_changed();
CREATE TRIGGER watches_history_truncate AFTER TRUNCATE ON watches
  FOR EACH STATEMENT EXECUTE FUNCTION marquee_history_truncated();

CREATE TRIGGER ratings_history_insert AFTER INSERT ON ratings REFERENCING NEW TABLE AS changed
  FOR EACH STATEMENT EXECUTE FUNCTION marquee_history_changed();
CREATE TRIGGER ratings_history_update AFTER UPDATE ON ratings REFERENCING NEW TABLE AS changed
  FOR EACH STATEMENT EXECUTE FUNCTION marquee_history_changed();
CREATE TRIGGER ratings_history_delete AFTER DELETE ON ratings REFERENCING OLD TABLE AS changed
  FOR EACH STATEMENT EXECUTE FUNCTION marquee_history_changed();
CREATE TRIGGER ratings_history_truncate AFTER TRUNCATE ON ratings
  FOR EACH STATEMENT EXECUTE FUNCTION marquee_history_truncated();

-- A history row carries its movie's runtime, which only unrated watches rank with (likeWeight):
-- when a movie's runtime changes, the users who watched it are told. Ingest inserts movies with
-- no runtime, so its inserts send nothing.
CREATE FUNCTION marquee_runtime_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM marquee_notify_history(ARRAY(
    SELECT DISTINCT w.user_id FROM watches w WHERE w.movie_id IN (SELECT id FROM new_movies WHERE runtime IS NOT NULL)));
  RETURN NULL;
END
$$;

CREATE FUNCTION marquee_runtime_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM marquee_notify_history(ARRAY(
    SELECT DISTINCT w.user_id FROM watches w WHERE w.movie_id IN (
      SELECT n.id FROM new_movies n JOIN old_movies o ON o.id = n.id WHERE n.runtime IS DISTINCT FROM o.runtime)));
  RETURN NULL;
END
$$;

CREATE FUNCTION marquee_runtime_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM marquee_notify_history(ARRAY(
    SELECT DISTINCT w.user_id FROM watches w WHERE w.movie_id IN (SELECT id FROM old_movies WHERE runtime IS NOT NULL)));
  RETURN NULL;
END
$$;

CREATE TRIGGER movies_runtime_insert AFTER INSERT ON movies REFERENCING NEW TABLE AS new_movies
  FOR EACH STATEMENT EXECUTE FUNCTION marquee_runtime_inserted();
CREATE TRIGGER movies_runtime_update AFTER UPDATE ON movies REFERENCING OLD TABLE AS old_movies NEW TABLE AS new_movies
  FOR EACH STATEMENT EXECUTE FUNCTION marquee_runtime_updated();
CREATE TRIGGER movies_runtime_delete AFTER DELETE ON movies REFERENCING OLD TABLE AS old_movies
  FOR EACH STATEMENT EXECUTE FUNCTION marquee_runtime_deleted();
CREATE TRIGGER movies_runtime_truncate AFTER TRUNCATE ON movies
  FOR EACH STATEMENT EXECUTE FUNCTION marquee_history_truncated();
