-- Initial schema: the tables of ../shared/ARCHITECTURE.md. Later migrations add to it; never edit an applied file.

CREATE TABLE movies (
  id                text PRIMARY KEY,            -- course slug, e.g. the+shawshank+redemption+1994
  title             text,
  year              integer,
  genres            text[],
  original_language text,
  popularity        double precision,
  vote_average      double precision,
  vote_count        integer,
  runtime           integer,
  release_date      date,
  first_seen_at     timestamptz NOT NULL DEFAULT now(),
  fetched_at        timestamptz                  -- NULL until the catalog has filled the metadata
);

CREATE TABLE users (
  id            integer PRIMARY KEY CHECK (id >= 0),
  age           integer,
  occupation    text,
  gender        text,
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  fetched_at    timestamptz
);

CREATE TABLE accounts (
  user_id    integer PRIMARY KEY,
  created_at timestamptz NOT NULL
);

-- One row per user and movie, aggregated from the minute-by-minute watch lines.
CREATE TABLE watches (
  user_id    integer NOT NULL,
  movie_id   text    NOT NULL,
  first_at   timestamptz NOT NULL,
  last_at    timestamptz NOT NULL,
  minutes    integer NOT NULL,                   -- distinct minutes seen
  max_minute integer NOT NULL,
  PRIMARY KEY (user_id, movie_id)
);
CREATE INDEX watches_movie_idx ON watches (movie_id);
CREATE INDEX watches_first_at_idx ON watches (first_at);

-- The latest rating per user and movie.
CREATE TABLE ratings (
  user_id  integer  NOT NULL,
  movie_id text     NOT NULL,
  rating   smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
  rated_at timestamptz NOT NULL,
  PRIMARY KEY (user_id, movie_id)
);

-- The recommendation-request lines read from Kafka.
CREATE TABLE recommendation_events (
  id         bigserial PRIMARY KEY,
  at         timestamptz NOT NULL,
  user_id    integer NOT NULL,
  server     text NOT NULL,
  status     integer NOT NULL,
  movie_ids  text[],
  error      text,
  latency_ms integer NOT NULL,
  topic      text NOT NULL,
  kafka_partition integer NOT NULL,
  kafka_offset    bigint NOT NULL,
  UNIQUE (topic, kafka_partition, kafka_offset)
);
CREATE INDEX recommendation_events_user_at_idx ON recommendation_events (user_id, at);

CREATE TABLE dead_letters (
  id              bigserial PRIMARY KEY,
  line            text NOT NULL,
  reason          text NOT NULL,
  topic           text NOT NULL,
  kafka_partition integer NOT NULL,
  kafka_offset    bigint NOT NULL,
  received_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (topic, kafka_partition, kafka_offset)
);

-- The next offset to read per partition, written in the same transaction as the data.
CREATE TABLE ingest_offsets (
  topic           text    NOT NULL,
  kafka_partition integer NOT NULL,
  next_offset     bigint  NOT NULL,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (topic, kafka_partition)
);

CREATE TABLE releases (
  id           text PRIMARY KEY,                 -- the version label
  model_spec   text NOT NULL,                    -- path of the spec, e.g. models/x.json
  spec         jsonb,
  spec_hash    text,
  image        text,
  image_digest text,
  git_commit   text,
  workflow_id  text,
  run_id       text,
  phase        text NOT NULL DEFAULT 'started',
  phase_times  jsonb NOT NULL DEFAULT '{}'::jsonb,
  metrics      jsonb,
  decision     text,
  reason       text,
  started_at   timestamptz NOT NULL DEFAULT now(),
  ended_at     timestamptz
);

-- Where the gateway sends traffic; one row, changed only through the admin API.
CREATE TABLE routing_state (
  id              integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  main_url        text NOT NULL,
  main_version    text NOT NULL,
  nightly_url     text,
  nightly_version text,
  nightly_percent integer NOT NULL DEFAULT 0 CHECK (nightly_percent BETWEEN 0 AND 100),
  release_id      text,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  updated_by      text NOT NULL DEFAULT 'migration'
);

CREATE TABLE routing_changes (
  id         bigserial PRIMARY KEY,
  changed_at timestamptz NOT NULL DEFAULT now(),
  changed_by text NOT NULL,
  before     jsonb,
  after      jsonb NOT NULL
);

CREATE TABLE user_assignments (
  release_id  text    NOT NULL,
  user_id     integer NOT NULL,
  slot        text    NOT NULL CHECK (slot IN ('main', 'nightly')),
  assigned_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (release_id, user_id)
);

-- Every answer the gateway served: the history used for evaluation and provenance.
CREATE TABLE served_recommendations (
  id            bigserial PRIMARY KEY,
  served_at     timestamptz NOT NULL,
  user_id       integer NOT NULL,
  slot          text NOT NULL,
  release_id    text,
  model_version text,
  movie_ids     text[] NOT NULL,
  latency_ms    double precision NOT NULL,
  fallback      text
);
CREATE INDEX served_recommendations_user_at_idx ON served_recommendations (user_id, served_at);
CREATE INDEX served_recommendations_release_idx ON served_recommendations (release_id, slot);

CREATE TABLE backups (
  id             bigserial PRIMARY KEY,
  file           text NOT NULL UNIQUE,
  created_at     timestamptz NOT NULL,
  size_bytes     bigint NOT NULL,
  sha256         text NOT NULL,
  ingest_offsets jsonb NOT NULL,
  row_counts     jsonb NOT NULL,
  release_id     text,
  manifest       jsonb NOT NULL,
  deleted_at     timestamptz
);
