-- Acknowledge a claimed entry and schedule the job again at a due time, atomically, so it is
-- neither lost nor run twice. KEYS[1] stream, KEYS[2] delayed set (same hash tag).
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] due time (ms), ARGV[4] member (the job's fields as JSON).
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
