-- Distinct minutes seen must hold across ingest batches, so each watch row keeps a bitmap of the
-- minutes seen (bit i = minute i); `minutes` is its population count.
ALTER TABLE watches ADD COLUMN seen varbit NOT NULL DEFAULT B'';

-- OR of two bitmaps of different lengths (Postgres' | needs equal lengths): pad the shorter one.
CREATE FUNCTION marquee_bit_or(a varbit, b varbit) RETURNS varbit
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE
    WHEN length(a) >= length(b) THEN a | (b || repeat('0', length(a) - length(b))::varbit)
    ELSE (a || repeat('0', length(b) - length(a))::varbit) | b
  END
$$;
