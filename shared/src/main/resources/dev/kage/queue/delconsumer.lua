-- Remove a consumer only when it holds no pending entry (XGROUP DELCONSUMER would drop them).
-- KEYS[1] stream. ARGV[1] group, ARGV[2] consumer. Returns 1 when removed.
local held = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #held > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
