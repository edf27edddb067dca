-- Acknowledge a claimed entry and schedule the job again after a delay, atomically, so it is
-- neither lost nor run twice. The due time is the Redis server's clock plus the delay, never a
-- worker's clock (a skewed worker would schedule early or late). KEYS[1] stream, KEYS[2] delayed set
-- (same hash tag). ARGV[1] group, ARGV[2] entry id, ARGV[3] delay (ms), ARGV[4] member (the job's
-- fields as JSON), ARGV[5] the consumer that must still own the entry ('' for any).
-- Returns the due time (ms since the epoch, server clock), or -1 when the entry is no longer this
-- consumer's (another worker reclaimed it, or it was acknowledged): then nothing changes.
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if not ok or #pending == 0 or (ARGV[5] ~= '' and pending[1][2] ~= ARGV[5]) then
  return -1
end
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], due, ARGV[4])
return due
