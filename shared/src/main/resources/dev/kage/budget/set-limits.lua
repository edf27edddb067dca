-- Changes a tenant's operator limits and applies them at once to its current day and month pools, when those exist,
-- so that holds already open grow (top-up.lua) and settle against the new limits: a reservation (reserve.lua)
-- copies the limits into the pools, a top-up reads the pool's own. A pool is never created here (it gets its TTL
-- when a reservation creates it).
-- KEYS: 1 the tenant's limits hash, 2 its day pool, 3 its month pool (one hash tag).
-- ARGV: 1 'set' or 'clear', 2..5 the fleet's defaults: day tokens, day micro-USD, month tokens, month micro-USD;
-- then, for 'set', field/value pairs (day_tokens, day_usd, month_tokens, month_usd).
-- Returns the number of pools changed.
if ARGV[1] == 'clear' then
  redis.call('DEL', KEYS[1])
elseif #ARGV > 5 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 6))
end
local h = redis.call('HGETALL', KEYS[1])
local o = {}
for k = 1, #h, 2 do
  o[h[k]] = h[k + 1]
end
local changed = 0
local function apply(pool, tokens, usd)
  if redis.call('EXISTS', pool) == 1 then
    redis.call('HSET', pool, 'limit', tokens, 'usd_limit', usd)
    changed = changed + 1
  end
end
apply(KEYS[2], o['day_tokens'] or ARGV[2], o['day_usd'] or ARGV[3])
apply(KEYS[3], o['month_tokens'] or ARGV[4], o['month_usd'] or ARGV[5])
return changed
