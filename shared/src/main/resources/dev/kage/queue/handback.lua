-- Give a claimed job back to the queue for another worker (shutdown, lost slot): acknowledge the
-- entry and add the same job as a new entry, atomically. KEYS[1] stream.
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] the consumer that must still own the entry ('' for any),
-- ARGV[4..] field/value pairs. Returns the new entry id, or false when the entry is no longer this
-- consumer's (another worker reclaimed it, or it was acknowledged): then nothing changes.
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if not ok or #pending == 0 or (ARGV[3] ~= '' and pending[1][2] ~= ARGV[3]) then
  return false
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
