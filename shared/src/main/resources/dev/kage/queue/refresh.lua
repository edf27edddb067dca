-- Keep an in-flight entry fresh for its owner only: reset its idle time (XCLAIM JUSTID, which does
-- not count a delivery) if ARGV[2] still owns it. KEYS[1] stream. ARGV[1] group, ARGV[2] consumer,
-- ARGV[3] entry id. Returns 1 when refreshed, -1 when another consumer owns it now (it was
-- reclaimed), 0 when it is pending nowhere (acknowledged, or Redis lost it).
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not ok or #pending == 0 then
  return 0
end
if pending[1][2] ~= ARGV[2] then
  return -1
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
