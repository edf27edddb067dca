-- Replaces hold ARGV[1] with the usage it came to, exactly once: a settle replayed (a command Lettuce
-- re-sends after a reconnect, a job run twice) changes nothing. Usage is recorded even when the hold has
-- lapsed or was released: tokens spent are spent.
-- The hold's record decides which pools are released and charged (the periods it was taken in, whatever
-- the caller's copy of the hold names); only when it has no record any more (lapsed, superseded) are the
-- caller's pools charged. The record's pools share the holds hash's hash tag (same slot).
-- KEYS: 1 holds, 2 expiry, 3 marker, 4.. the caller's idea of the hold's pools.
-- ARGV: 1 hold id, 2 tokens used, 3 micro-USD used, 4 warning threshold (fraction), 5 marker TTL ms.
-- Returns {settled now (1) or before (0), number of pools, then per pool charged: key, limit, used,
-- usd_limit, usd_used, flags} where flags: 1 token warning now, 2 USD warning now, 4 token warning ever,
-- 8 USD warning ever, 16 token limit passed now (first time), 32 USD limit passed now (first time).
-- The settled marker s:<hold> keeps "<tokens> <usd> <pool> <pool>...": a replay reports those pools.
local holds, expiry, marker = KEYS[1], KEYS[2], KEYS[3]
local id = ARGV[1]
local tokens, usd = num(ARGV[2]), num(ARGV[3])
local threshold = tonumber(ARGV[4])

local function callers_pools()
  local pools = {}
  for i = 4, #KEYS do
    pools[#pools + 1] = KEYS[i]
  end
  return pools
end

local settled = redis.call('HGET', marker, 's:' .. id)
if settled then
  local parts = split(settled)
  local pools = {}
  for i = 3, #parts do
    pools[#pools + 1] = parts[i]
  end
  if #pools == 0 then
    pools = callers_pools()
  end
  local out = {0, #pools}
  for _, pool in ipairs(pools) do
    local f = redis.call('HMGET', pool, 'limit', 'used', 'usd_limit', 'usd_used', 'warned', 'usd_warned')
    out[#out + 1] = pool
    out[#out + 1] = num(f[1])
    out[#out + 1] = num(f[2])
    out[#out + 1] = num(f[3])
    out[#out + 1] = num(f[4])
    out[#out + 1] = (f[5] and 4 or 0) + (f[6] and 8 or 0)
  end
  return out
end

local held_t, held_u = 0, 0
local pools = nil
local record = redis.call('HGET', holds, id)
if record then
  local parts = split(record)
  held_t, held_u = num(parts[1]), num(parts[2])
  pools = {}
  for i = 3, #parts do
    pools[#pools + 1] = parts[i]
  end
  redis.call('HDEL', holds, id, id .. '#topups')
  redis.call('ZREM', expiry, id)
else
  pools = callers_pools()
end
local out = {1, #pools}
for _, pool in ipairs(pools) do
  add(pool, 'reserved', -held_t)
  add(pool, 'usd_reserved', -held_u)
  local used = add(pool, 'used', tokens)
  local usd_used = add(pool, 'usd_used', usd)
  local f = redis.call('HMGET', pool, 'limit', 'usd_limit', 'warned', 'usd_warned')
  local limit, usd_limit, warned, usd_warned = num(f[1]), num(f[2]), f[3], f[4]
  local flags = 0
  if limit > 0 and not warned and used >= threshold * limit then
    redis.call('HSET', pool, 'warned', '1')
    warned = '1'
    flags = flags + 1
  end
  if usd_limit > 0 and not usd_warned and usd_used >= threshold * usd_limit then
    redis.call('HSET', pool, 'usd_warned', '1')
    usd_warned = '1'
    flags = flags + 2
  end
  if warned then flags = flags + 4 end
  if usd_warned then flags = flags + 8 end
  if limit > 0 and used > limit and redis.call('HSETNX', pool, 'exceeded', '1') == 1 then flags = flags + 16 end
  if usd_limit > 0 and usd_used > usd_limit and redis.call('HSETNX', pool, 'usd_exceeded', '1') == 1 then flags = flags + 32 end
  out[#out + 1] = pool
  out[#out + 1] = limit
  out[#out + 1] = used
  out[#out + 1] = usd_limit
  out[#out + 1] = usd_used
  out[#out + 1] = flags
end
redis.call('HSET', marker, 's:' .. id, string.format('%d %d ', tokens, usd) .. table.concat(pools, ' '))
redis.call('PEXPIRE', marker, ARGV[5])
return out
