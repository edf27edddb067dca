-- Add a job to its stream once per (job, attempt), however often it is asked (a reconciler and a
-- coordinator racing, a replayed command). KEYS[1] stream, KEYS[2] marker key.
-- ARGV[1] marker TTL ms, ARGV[2..] field/value pairs. Returns the entry id, or false when already added.
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) == false then
  return false
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
