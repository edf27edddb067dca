-- Reserve ARGV[2] tokens under reservation id ARGV[1] in the pool KEYS[1], all or nothing.
-- ARGV[3] limit used when the pool is new, ARGV[4] 'enforce' or 'log', ARGV[5] pool TTL in ms.
-- Returns {accepted (1 new, 2 already reserved or settled, 0 refused), used, reserved, limit}.
local pool = KEYS[1]
local id = ARGV[1]
local amount = tonumber(ARGV[2])
redis.call('HSETNX', pool, 'limit', ARGV[3])
local limit = tonumber(redis.call('HGET', pool, 'limit'))
local used = tonumber(redis.call('HGET', pool, 'used') or '0')
local reserved = tonumber(redis.call('HGET', pool, 'reserved') or '0')
if redis.call('HEXISTS', pool, 'r:' .. id) == 1 or redis.call('HEXISTS', pool, 's:' .. id) == 1 then
  return {2, used, reserved, limit}
end
if ARGV[4] == 'enforce' and used + reserved + amount > limit then
  return {0, used, reserved, limit}
end
reserved = redis.call('HINCRBY', pool, 'reserved', amount)
redis.call('HSET', pool, 'r:' .. id, amount)
redis.call('PEXPIRE', pool, ARGV[5])
return {1, used, reserved, limit}
