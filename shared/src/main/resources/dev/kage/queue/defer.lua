-- Acknowledge a claimed entry and schedule the job again after a delay, atomically, so it is
-- neither lost nor run twice. The due time is the Redis server's clock plus the delay, never a
-- worker's clock (a skewed worker would schedule early or late). KEYS[1] stream, KEYS[2] delayed set
-- (same hash tag). ARGV[1] group, ARGV[2] entry id, ARGV[3] delay (ms), ARGV[4] member (the job's
-- fields as JSON). Returns the due time (ms since the epoch, server clock).
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], due, ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return due
