-- Backups and restores as Temporal workflows. A backup row names the workflow run that made it;
-- provenance asks for "the last backup before time T", hence the index on created_at.
ALTER TABLE backups
  ADD COLUMN source_database text,
  ADD COLUMN workflow_id     text,
  ADD COLUMN run_id          text;
CREATE INDEX backups_created_at_idx ON backups (created_at);

-- One row per DatabaseRestore run (id = its workflow id). The rows live in the live database and
-- are carried over into the restored one at the switch, so the record survives the restore.
CREATE TABLE restores (
  id                text PRIMARY KEY,
  backup_id         bigint,
  backup_file       text,
  live_database     text NOT NULL,
  restored_database text,
  previous_database text,
  forced            boolean NOT NULL DEFAULT false,
  status            text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
  error             text,
  started_at        timestamptz NOT NULL DEFAULT now(),
  ended_at          timestamptz
);

-- Every step of a restore, once each (an activity retried after a crash upserts the same row).
CREATE TABLE restore_steps (
  restore_id text NOT NULL,
  step       text NOT NULL,
  status     text NOT NULL CHECK (status IN ('ok', 'skipped', 'failed')),
  detail     jsonb,
  at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (restore_id, step)
);
