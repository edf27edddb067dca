-- enqueue.lua for many jobs of one agent in one call: each (job, attempt) is added to its priority's stream once,
-- however often it is asked. KEYS[1..3] the agent's streams high, normal, low; KEYS[4..] one enqueue-once marker per
-- job, in order. ARGV[1] marker TTL ms; then per job: its priority (high|normal|low), its field count n, and its n
-- field/value strings. Every key carries the agent's hash tag. Returns how many jobs were added, or the error of
-- the first XADD Redis refuses (that job's marker removed, the jobs before it added).
local streams = {high = KEYS[1], normal = KEYS[2], low = KEYS[3]}
local at = 2
local added = 0
for k = 4, #KEYS do
  local stream = streams[ARGV[at]]
  local n = tonumber(ARGV[at + 1])
  if redis.call('SET', KEYS[k], '1', 'NX', 'PX', ARGV[1]) then
    local ok, err = pcall(redis.call, 'XADD', stream, '*', unpack(ARGV, at + 2, at + 1 + n))
    if not ok then
      -- As in enqueue.lua: no marker without its entry. The jobs before this one are in; the caller fails.
      redis.call('DEL', KEYS[k])
      return redis.error_reply(err.err or tostring(err))
    end
    added = added + 1
  end
  at = at + 2 + n
end
return added
