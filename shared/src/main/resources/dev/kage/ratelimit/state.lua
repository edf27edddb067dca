-- A limit group as the fleet sees it now (read-only apart from dropping expired permits).
-- KEYS[1] group hash, KEYS[2] requests zset, KEYS[3] tokens zset, KEYS[4] cooldown, KEYS[5..7] waiting zsets
-- Returns {exists 0|1, limit, window_ms, tokens_limit, guard_ms, source, effective, used, tokens_used,
--          cooldown_ms, waiting_high, waiting_normal, waiting_low, updated_at}
local now = serverMicros()
local cfg = redis.call('HMGET', KEYS[1], 'limit', 'window_ms', 'tokens_limit', 'guard_ms', 'source', 'effective',
  'effective_at', 'tokens_used', 'updated_at')
if not cfg[1] then
  return {0}
end
local limit = tonumber(cfg[1])
local windowMs = tonumber(cfg[2])
local hold = (windowMs + tonumber(cfg[4])) * 1000
local effective = effectiveRate(limit, windowMs, cfg[6], cfg[7], now)
local used = redis.call('ZCOUNT', KEYS[2], string.format('(%.0f', now - hold), '+inf')
local tokensUsed = 0
local members = redis.call('ZRANGEBYSCORE', KEYS[3], string.format('(%.0f', now - hold), '+inf')
for _, member in ipairs(members) do
  tokensUsed = tokensUsed + tonumber(string.match(member, '|(%d+)$'))
end
local waiting = {}
for i = 5, 7 do
  waiting[i - 4] = redis.call('ZCOUNT', KEYS[i], string.format('(%.0f', now), '+inf')
end
return {1, cfg[1], cfg[2], cfg[3], cfg[4], cfg[5] or 'config', effective, used, tokensUsed,
  math.max(0, redis.call('PTTL', KEYS[4])), waiting[1], waiting[2], waiting[3], cfg[9] or '0'}
