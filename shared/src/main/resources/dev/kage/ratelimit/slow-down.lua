-- The provider pushed back: pause the group for the whole fleet and lower its effective rate.
--
-- KEYS[1] group hash, KEYS[2] cooldown string, KEYS[3] requests zset (the window's grants)
-- ARGV[1] pause ms (0: none, only lower the rate), ARGV[2] factor the effective rate is multiplied by,
-- ARGV[3] 'episode' (a 429: lower when no pause is in force, so many workers seeing one burst of 429s lower it once) or
--         'window' (rate-limit headers reporting a nearly spent quota)
-- Either way the rate is lowered at most once per window: the provider counts calls over its window, so push-back
-- within a window of the last decrease answers the same calls (still in its window) that the decrease already
-- answered. A storm of 429s with short Retry-Afters (a new pause every few seconds) lowers it once per window, not
-- once per pause: halving per pause took a 600/min group to 75/min in a 10 s storm, below the 128 calls the fleet
-- had made in the window, and the fleet stood still until they drained (TCP likewise halves once per round trip).
-- A decrease lowers the pace from now on, not the past: the window's grants already made (score <= now; a leased
-- grant not yet sent scores later and is kept) are thinned by the same factor, evenly. Otherwise a fleet that ran at
-- its limit holds a window full of calls at full weight against the lowered rate, and no permit is granted until
-- enough of them age out (~30 s at 600/min after one halving); thinned, the window's grants age out at the lowered
-- pace, and permits follow at that pace (as a token bucket whose refill rate is lowered would give them).
-- Returns {pause_ms in force, lowered 0|1, effective rate afterwards}.
local now = serverMicros()
local cfg = redis.call('HMGET', KEYS[1], 'limit', 'window_ms', 'effective', 'effective_at')
if not cfg[1] then
  -- The group's hash is gone (a Redis that lost its data, before the next ask sets it up again): the pause needs no
  -- configuration, and the provider's push-back must still hold the fleet back.
  local pause = tonumber(ARGV[1])
  local current = redis.call('PTTL', KEYS[2])
  if pause > 0 and pause > current then
    redis.call('SET', KEYS[2], math.floor(now / 1000), 'PX', pause)
  end
  return {math.max(pause, current), 0, 0}
end
local limit = tonumber(cfg[1])
local windowUs = tonumber(cfg[2]) * 1000
local effective = effectiveRate(limit, tonumber(cfg[2]), cfg[3], cfg[4], now)

local current = redis.call('PTTL', KEYS[2])
local pause = tonumber(ARGV[1])
local lower = not cfg[4] or now - tonumber(cfg[4]) >= windowUs
if ARGV[3] == 'episode' then
  lower = lower and current <= 0
end
if pause > 0 and pause > current then
  redis.call('SET', KEYS[2], math.floor(now / 1000), 'PX', pause)
end
if ARGV[3] == 'episode' and pause > 0 then
  -- After a 429's pause, one call (the probe) goes first: acquire.lua.
  redis.call('HSET', KEYS[1], 'probe', '0')
end
local lowered = 0
if lower then
  -- Recovery (one tenth of the limit per window) starts again from now.
  effective = math.max(1, math.floor(effective * tonumber(ARGV[2])))
  redis.call('HSET', KEYS[1], 'effective', effective, 'effective_at', now)
  lowered = 1
  if KEYS[3] then
    local factor = tonumber(ARGV[2])
    local past = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
    for i = 1, #past do
      -- keep grant i when the kept count steps up at it: floor(i * factor) > floor((i - 1) * factor)
      if math.floor(i * factor) == math.floor((i - 1) * factor) then
        redis.call('ZREM', KEYS[3], past[i])
      end
    end
  end
end
return {math.max(pause, current), lowered, effective}
