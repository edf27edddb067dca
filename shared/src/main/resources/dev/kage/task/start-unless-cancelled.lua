-- A job starts unless its task was cancelled, atomically. KEYS[1] the task's live state hash.
-- ARGV[1] its time to live (ms), ARGV[2] '1' when a missing hash may be created (the job is young: its task's live
-- state was never written, as for a batch submit's, or was written less than a time to live ago) or '0' (the job has
-- waited so long that a missing hash may have expired with a cancel in it), ARGV[3..] field/value pairs to write.
-- Returns 1 (and writes nothing) when the task is cancelled, 2 (and writes nothing) when the hash is missing and may
-- not be created (only Postgres can say whether the task was cancelled), else 0.
if ARGV[2] == '0' and redis.call('EXISTS', KEYS[1]) == 0 then
  return 2
end
if redis.call('HGET', KEYS[1], 'cancelled') == '1' then
  return 1
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
