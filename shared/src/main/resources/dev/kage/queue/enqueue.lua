-- Add a job to its stream once per (job, attempt), however often it is asked (a reconciler and a
-- coordinator racing, a replayed command). KEYS[1] stream, KEYS[2] marker key.
-- ARGV[1] marker TTL ms, ARGV[2..] field/value pairs. Returns the entry id, or false when already added.
-- When Redis refuses the XADD (the stream's key holds another type), the marker goes too and the error is
-- returned: a marker without its entry would make every later enqueue of the attempt add nothing.
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) == false then
  return false
end
local ok, id = pcall(redis.call, 'XADD', KEYS[1], '*', unpack(ARGV, 2))
if not ok then
  redis.call('DEL', KEYS[2])
  return redis.error_reply(id.err or tostring(id))
end
return id
