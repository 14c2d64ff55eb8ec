-- A slot can run more than one replica: main_url / nightly_url stay the slot's first endpoint
-- (what older readers use), these list the others. The gateways sharing this row spread each
-- slot's users over all of them.
ALTER TABLE routing_state
  ADD COLUMN main_replicas    text[] NOT NULL DEFAULT '{}',
  ADD COLUMN nightly_replicas text[] NOT NULL DEFAULT '{}';
