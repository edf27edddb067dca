-- Shared by the budget scripts (prepended to each). A pool is a hash: limit, used, reserved (tokens),
-- usd_limit, usd_used, usd_reserved (micro-USD), warned, usd_warned, exceeded, usd_exceeded; a limit of 0
-- means none. A hold is a field of the holds hash: "<tokens> <usd> <pool> <pool> ...", its lapse time (ms,
-- Redis clock) in the expiry sorted set. Every pool a hold names shares the holds hash's hash tag (slot).
local function num(v)
  return tonumber(v) or 0
end

-- HINCRBY that takes a Lua number (never "-0" or "1e+15"); returns the new value.
local function add(key, field, n)
  if n == 0 then
    return num(redis.call('HGET', key, field))
  end
  return redis.call('HINCRBY', key, field, string.format('%d', n))
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function split(text)
  local parts = {}
  for p in string.gmatch(text, '%S+') do
    parts[#parts + 1] = p
  end
  return parts
end

-- Gives a hold's tokens and dollars back to its pools (no usage is recorded). 1 when it was open.
local function release_hold(holds, expiry, id)
  redis.call('ZREM', expiry, id)
  local record = redis.call('HGET', holds, id)
  if not record then
    return 0
  end
  redis.call('HDEL', holds, id, id .. '#topups')
  local parts = split(record)
  local tokens, usd = num(parts[1]), num(parts[2])
  for i = 3, #parts do
    if redis.call('EXISTS', parts[i]) == 1 then
      add(parts[i], 'reserved', -tokens)
      add(parts[i], 'usd_reserved', -usd)
    end
  end
  return 1
end

-- Releases up to max holds whose time is up. Returns how many.
local function sweep(holds, expiry, now, max)
  local due = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, max)
  for _, id in ipairs(due) do
    release_hold(holds, expiry, id)
  end
  return #due
end

local function pool_state(pool)
  local f = redis.call('HMGET', pool, 'limit', 'used', 'reserved', 'usd_limit', 'usd_used', 'usd_reserved')
  return {num(f[1]), num(f[2]), num(f[3]), num(f[4]), num(f[5]), num(f[6])}
end
