-- A granted call has just left for the provider: its permit is stamped with now (server clock, µs), so
-- it is held for the window (plus guard) after the provider sees the call, however long the call took
-- to leave (a cold HTTP client, a slow process start). A permit granted with a send lease counted from
-- grant + lease until now; this brings it back to the real time of the call.
-- KEYS[1] requests zset, KEYS[2] tokens zset; ARGV[1] the grant's member, ARGV[2] its tokens member ('' for none).
-- Returns 1 when the permit was still in the window, 0 when it was already released.
local now = serverMicros()
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[2], 'XX', now, ARGV[2])
end
return 1
