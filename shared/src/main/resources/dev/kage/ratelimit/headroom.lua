-- How many callers a limit group could grant a request permit within a horizon, for a claim loop deciding how
-- many jobs to take (read-only: expired permits are only left out, not dropped).
-- KEYS[1] group hash, KEYS[2] requests zset, KEYS[3] cooldown, KEYS[4..6] waiting zsets (high, normal, low)
-- ARGV[1] horizon ms: how long a claimed job may wait in its slot for a permit (RATE_LIMIT_MAX_SLOT_WAIT_SECONDS)
-- ARGV[2] probe lease ms (acquire.lua): after a 429's pause, one probe may be granted, then none until its answer
-- Returns {exists 0|1, cooldown_ms, free, look_again_ms}: free = the effective rate - the permits held + those released
-- within the horizon - the callers already waiting for one (may be negative); look_again_ms = when the next held
-- permit's release comes within the horizon (0: none held beyond it).
local now = serverMicros()
local cfg = redis.call('HMGET', KEYS[1], 'limit', 'window_ms', 'guard_ms', 'effective', 'effective_at', 'probe')
if not cfg[1] then
  return {0, 0, 0, 0}
end
local limit = tonumber(cfg[1])
local windowMs = tonumber(cfg[2])
local hold = (windowMs + tonumber(cfg[3])) * 1000
local horizon = tonumber(ARGV[1]) * 1000
local effective = effectiveRate(limit, windowMs, cfg[4], cfg[5], now)
local cooldown = math.max(0, redis.call('PTTL', KEYS[3]))
local since = string.format('(%.0f', now - hold)
local used = redis.call('ZCOUNT', KEYS[2], since, '+inf')
-- A permit granted at `score` is released at score + hold: within the horizon when score <= now - hold + horizon.
local releasing = redis.call('ZCOUNT', KEYS[2], since, string.format('%.0f', now - hold + horizon))
local waiting = 0
for i = 4, 6 do
  waiting = waiting + redis.call('ZCOUNT', KEYS[i], string.format('(%.0f', now), '+inf')
end
local lookAgainMs = 0
local next = redis.call('ZRANGEBYSCORE', KEYS[2], since, '+inf', 'WITHSCORES', 'LIMIT', releasing, 1)
if #next > 0 then
  lookAgainMs = math.floor(math.max(0, tonumber(next[2]) + hold - horizon - now) / 1000) + 1
end
local free = effective - used + releasing - waiting
local probe = cfg[6]
if probe then
  local leaseUs = tonumber(ARGV[2] or '0') * 1000
  if probe == '0' then
    free = math.min(free, 1)
  elseif now - tonumber(probe) < leaseUs then
    return {1, cooldown, 0, math.floor(math.min(tonumber(probe) + leaseUs - now, PROBE_POLL_US) / 1000) + 1}
  end
end
return {1, cooldown, free, lookAgainMs}
