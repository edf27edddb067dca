-- Replace reservation ARGV[1] in pool KEYS[1] with the actual usage ARGV[2], exactly once.
-- ARGV[3] warning threshold (fraction), ARGV[4] limit used when the pool is new, ARGV[5] pool TTL in ms.
-- Returns {settled (1 now, 0 already settled), used, limit, warning issued now (1/0), warned ever (1/0)}.
local pool = KEYS[1]
local id = ARGV[1]
redis.call('HSETNX', pool, 'limit', ARGV[4])
local limit = tonumber(redis.call('HGET', pool, 'limit'))
if redis.call('HEXISTS', pool, 's:' .. id) == 1 then
  local warned = redis.call('HEXISTS', pool, 'warned')
  return {0, tonumber(redis.call('HGET', pool, 'used') or '0'), limit, 0, warned}
end
local held = redis.call('HGET', pool, 'r:' .. id)
if held then
  redis.call('HINCRBY', pool, 'reserved', -tonumber(held))
  redis.call('HDEL', pool, 'r:' .. id)
end
local used = redis.call('HINCRBY', pool, 'used', tonumber(ARGV[2]))
redis.call('HSET', pool, 's:' .. id, ARGV[2])
local warnNow = 0
if used >= tonumber(ARGV[3]) * limit and redis.call('HSETNX', pool, 'warned', '1') == 1 then
  warnNow = 1
end
redis.call('PEXPIRE', pool, ARGV[5])
return {1, used, limit, warnNow, redis.call('HEXISTS', pool, 'warned')}
