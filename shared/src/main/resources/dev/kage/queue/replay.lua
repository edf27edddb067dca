-- Replay a dead letter: mark it replayed and add its next attempt to the stream once, atomically, so that a replay
-- either did all of it or nothing (a failed replay can be made again; a finished one is never made twice).
-- KEYS[1] the letter's replayed mark, KEYS[2] the stream, KEYS[3] the attempt's enqueue-once marker (one hash tag:
-- the agent's). ARGV[1] both marks' TTL (ms), ARGV[2..] the entry's field/value pairs.
-- Returns the new entry id; 'present' when the attempt was added before (marked replayed now); false when the
-- letter was replayed before.
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) == false then
  return false
end
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[1]) == false then
  return 'present'
end
local ok, id = pcall(redis.call, 'XADD', KEYS[2], '*', unpack(ARGV, 2))
if not ok then
  redis.call('DEL', KEYS[1], KEYS[3])
  return redis.error_reply(id.err or tostring(id))
end
return id
