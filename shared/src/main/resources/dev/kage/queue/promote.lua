-- Move due jobs from the delayed set to their priority's stream; whichever process runs this first
-- moves each job, exactly once (ZREM decides). KEYS[1] delayed set, KEYS[2..4] streams high, normal, low.
-- "Due" is by the Redis server's clock, never a worker's. ARGV[1] at most this many. Returns how many moved.
local streams = {high = KEYS[2], normal = KEYS[3], low = KEYS[4]}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local moved = 0
for _, member in ipairs(due) do
  if redis.call('ZREM', KEYS[1], member) == 1 then
    local fields = cjson.decode(member)
    local stream = streams[fields['priority']] or KEYS[3]
    local args = {}
    for k, v in pairs(fields) do
      args[#args + 1] = k
      args[#args + 1] = tostring(v)
    end
    redis.call('XADD', stream, '*', unpack(args))
    moved = moved + 1
  end
end
return moved
