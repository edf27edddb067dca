-- A job starts unless its task was cancelled, atomically. KEYS[1] the task's live state hash.
-- ARGV[1] its time to live (ms), ARGV[2..] field/value pairs to write. Returns 1 (and writes nothing) when
-- the task is cancelled, else 0.
if redis.call('HGET', KEYS[1], 'cancelled') == '1' then
  return 1
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
