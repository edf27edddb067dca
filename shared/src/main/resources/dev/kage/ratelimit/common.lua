-- Shared by the limiter's scripts: prepended to each one when it is loaded (FleetRateLimiter.script).

-- Now, by the Redis server's clock, in microseconds (exact as a Lua number: about 1.8e15 < 2^53).
local function serverMicros()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Lets `key` live at least `ms` more: GT, so a short-lived entry never cuts the life a longer-lived one gave the
-- key, and a TTL set where the key had none (GT leaves a key without one as it is).
local function keepFor(key, ms)
  redis.call('PEXPIRE', key, ms, 'GT')
  if redis.call('PTTL', key) < 0 then
    redis.call('PEXPIRE', key, ms)
  end
end

-- The group's rate now, at least 1: the limit, or after a decrease to `base` at `at` (µs) the base plus
-- a tenth of the limit for every whole window since (additive increase), never above the limit.
local function effectiveRate(limit, windowMs, base, at, now)
  if not base then
    return limit
  end
  local steps = math.floor((now - tonumber(at)) / (windowMs * 1000))
  return math.max(1, math.floor(math.min(limit, tonumber(base) + steps * math.max(1, math.floor(limit / 10)))))
end

-- While the probe after a 429's pause is out, the others ask again at least this often (µs).
local PROBE_POLL_US = 250000
