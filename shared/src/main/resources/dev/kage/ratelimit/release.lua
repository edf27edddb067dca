-- The call a permit was granted for never left (its process could not start, its connection was
-- refused): the permit is given back. KEYS[1] requests zset, KEYS[2] tokens zset, KEYS[3] group hash;
-- ARGV[1] the grant's member, ARGV[2] its tokens member ('' for none), ARGV[3] its tokens.
-- Returns 1 when the permit was still held.
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('ZREM', KEYS[2], ARGV[2]) == 1 then
  local left = redis.call('HINCRBY', KEYS[3], 'tokens_used', -tonumber(ARGV[3]))
  if left < 0 then
    redis.call('HSET', KEYS[3], 'tokens_used', 0)
  end
end
return removed
