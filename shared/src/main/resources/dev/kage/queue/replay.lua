-- Replay a dead letter: mark it replayed and add its next attempt to the stream once, atomically, so that a replay
-- either did all of it or nothing (a failed replay can be made again; a finished one is never made twice).
-- KEYS[1] the letter's replayed mark, KEYS[2] the stream, KEYS[3] the attempt's enqueue-once marker (one hash tag:
-- the agent's). ARGV[1] both marks' TTL (ms), ARGV[2..] the entry's field/value pairs.
-- Returns the new entry id; 'present' when the attempt was added before (marked replayed now); false when the
-- letter was replayed before.
-- A letter whose replay was begun (its mark 'replaying': JobQueue.beginReplay, taken before the task is reopened in
-- Postgres) is this replay's to finish; any other mark ('1', 'discarded') means it was replayed or discarded.
local mark = redis.call('GET', KEYS[1])
if mark and mark ~= 'replaying' then
  return false
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[1]) == false then
  return 'present'
end
local ok, id = pcall(redis.call, 'XADD', KEYS[2], '*', unpack(ARGV, 2))
if not ok then
  if mark then
    redis.call('SET', KEYS[1], 'replaying', 'PX', ARGV[1])
  else
    redis.call('DEL', KEYS[1])
  end
  redis.call('DEL', KEYS[3])
  return redis.error_reply(id.err or tostring(id))
end
return id
