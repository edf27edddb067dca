-- Takes one request permit (and `tokens` token permits) of a limit group for the whole fleet, or says
-- how long to wait. Every time is the Redis server's clock (TIME), never a worker's, in microseconds.
--
-- KEYS[1] group hash: limit, window_ms, tokens_limit, guard_ms, source, effective, effective_at, tokens_used
-- KEYS[2] requests zset: one member per grant, score = grant time (µs)
-- KEYS[3] tokens zset: member "<grant>|<tokens>", score = grant time (µs)
-- KEYS[4] cooldown string, PX = the fleet-wide pause after a 429
-- KEYS[5..7] waiting zsets of high, normal, low callers, score = when the registration lapses (µs)
-- ARGV[1] caller id (stable across polls: a job id), ARGV[2] priority rank 0 high .. 2 low,
-- ARGV[3] tokens to take (0: none), ARGV[4] slack ms a waiter's registration outlives its wait,
-- ARGV[5..8] the group's configured limit, window_ms, tokens_limit, guard_ms (used when the hash is missing),
-- ARGV[9] send lease ms (FleetRateLimiter.SEND_LEASE): 0 when the call leaves at once (the permit counts from its grant); else the permit
--         counts from grant + lease until the caller stamps it with the time its call left (sent.lua), so a
--         caller that stalls between grant and call cannot see its permit released before its call is made
--
-- ARGV[10] probe lease ms (FleetRateLimiter.PROBE_LEASE): after a 429's pause, how long the rest wait for the probe's answer
--
-- Returns {granted 0|1, wait_ms, reason, limit, effective, used, spread_ms, tokens_used[, granted_at µs, tokens taken,
-- probe 0|1]}: reason is granted, cooldown, requests, tokens, priority or probe; spread_ms is a later wake-up time among
-- which waiters spread; probe 1 when this grant is the probe after a 429's pause (its caller reports the answer: answered.lua).
local now = serverMicros()

local cfg = redis.call('HMGET', KEYS[1], 'limit', 'window_ms', 'tokens_limit', 'guard_ms', 'effective', 'effective_at', 'tokens_used')
if not cfg[1] then
  redis.call('HSET', KEYS[1], 'limit', ARGV[5], 'window_ms', ARGV[6], 'tokens_limit', ARGV[7], 'guard_ms', ARGV[8],
    'source', 'config', 'updated_at', math.floor(now / 1000))
  cfg = {ARGV[5], ARGV[6], ARGV[7], ARGV[8], false, false, '0'}
end
local limit = tonumber(cfg[1])
local windowMs = tonumber(cfg[2])
local tokensLimit = tonumber(cfg[3])
-- A permit is held for the window plus the guard: a call reaches the provider a little after its grant,
-- and the guard keeps that lag from putting one call too many into a provider-side window.
local hold = (windowMs + tonumber(cfg[4])) * 1000

-- Adaptive rate: after a decrease, one tenth of the limit comes back per window (additive increase).
local effective = effectiveRate(limit, windowMs, cfg[5], cfg[6], now)
if cfg[5] and effective >= limit then
  redis.call('HDEL', KEYS[1], 'effective', 'effective_at')
end

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - hold)
local used = redis.call('ZCARD', KEYS[2])
local tokensUsed = tonumber(cfg[7] or '0')
if tokensLimit > 0 then
  if redis.call('EXISTS', KEYS[3]) == 0 and tokensUsed ~= 0 then
    tokensUsed = 0
    redis.call('HSET', KEYS[1], 'tokens_used', 0)
  end
  local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - hold)
  if #expired > 0 then
    local freed = 0
    for _, member in ipairs(expired) do
      freed = freed + tonumber(string.match(member, '|(%d+)$'))
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - hold)
    tokensUsed = redis.call('HINCRBY', KEYS[1], 'tokens_used', -freed)
    if tokensUsed < 0 or redis.call('ZCARD', KEYS[3]) == 0 then
      tokensUsed = 0
      redis.call('HSET', KEYS[1], 'tokens_used', 0)
    end
  end
end

local cooldown = redis.call('PTTL', KEYS[4])
if cooldown > 0 then
  return {0, cooldown, 'cooldown', limit, effective, used, cooldown, tokensUsed}
end

local rank = tonumber(ARGV[2])
local id = ARGV[1]
local waitKey = KEYS[5 + rank]
local ahead = 0
for r = 0, rank - 1 do
  redis.call('ZREMRANGEBYSCORE', KEYS[5 + r], '-inf', now)
  ahead = ahead + redis.call('ZCARD', KEYS[5 + r])
end
redis.call('ZREMRANGEBYSCORE', waitKey, '-inf', now)
local peers = redis.call('ZCARD', waitKey)

-- µs from now until the member at `index` (oldest first) of `key` is released; 0 when there is none. At
-- most one hold: a permit still on its send lease is stamped (and so released within a hold) once its
-- call leaves, which is normally a moment after its grant.
local function releaseOf(key, index)
  local entry = redis.call('ZRANGE', key, index, index, 'WITHSCORES')
  if #entry == 0 then
    return 0
  end
  return math.min(hold, math.max(0, tonumber(entry[2]) + hold - now))
end

-- A denied caller waits at least this long (ms) before it asks again: no hot loop, whatever the state.
local MIN_WAIT_MS = 10

local function deny(reason, waitUs, spreadUs)
  local waitMs = math.max(MIN_WAIT_MS, math.floor(waitUs / 1000) + 1)
  local spreadMs = math.max(waitMs, math.floor(spreadUs / 1000) + 1)
  local lapse = spreadMs + tonumber(ARGV[4])
  redis.call('ZADD', waitKey, now + lapse * 1000, id)
  -- a short registration never cuts the key's life under a longer one's
  keepFor(waitKey, lapse + 1000)
  return {0, waitMs, reason, limit, effective, used, spreadMs, tokensUsed}
end

-- A rank whose callers wait while this many permits in a row go to higher ranks gets the next one.
local FAIR_SHARE = 4

local free = effective - used
-- Waiters spread their next asks over the next few releases: fewer asks per release than all waiters
-- at once, yet a released permit is taken again soon (spreading wider costs utilisation).
local SPREAD = 3
if free <= 0 then
  -- Full: wait for the permit whose release makes room.
  local index = used - effective
  return deny('requests', releaseOf(KEYS[2], index), releaseOf(KEYS[2], math.min(used - 1, index + math.min(peers + ahead, SPREAD))))
end
if ahead > 0 and free <= ahead then
  -- What is left belongs to higher-priority callers who are waiting for it, unless this rank has waited through
  -- FAIR_SHARE grants to higher ranks: then this one is its (a steady stream of high work must not starve the rest,
  -- as the claim order does not).
  local owed = tonumber(redis.call('HGET', KEYS[1], 'owed:' .. rank) or '0')
  if owed < FAIR_SHARE then
    return deny('priority', releaseOf(KEYS[2], 0), releaseOf(KEYS[2], math.min(used - 1, math.min(ahead + peers, SPREAD))))
  end
end
-- And the other way: a lower rank that is owed its share, and has callers waiting, has the last free permits held for
-- it, whoever asks first (else a higher caller that happens to ask first after each release takes every one).
local held = 0
for r = rank + 1, 2 do
  if tonumber(redis.call('HGET', KEYS[1], 'owed:' .. r) or '0') >= FAIR_SHARE then
    redis.call('ZREMRANGEBYSCORE', KEYS[5 + r], '-inf', now)
    if redis.call('ZCARD', KEYS[5 + r]) > 0 then
      held = held + 1
    end
  end
end
if held > 0 and free <= held then
  return deny('priority', releaseOf(KEYS[2], 0), releaseOf(KEYS[2], math.min(used - 1, SPREAD)))
end

-- An estimate above the whole token limit could never fit: it takes the whole window instead.
local tokens = math.min(tonumber(ARGV[3]), tokensLimit > 0 and tokensLimit or tonumber(ARGV[3]))
if tokensLimit > 0 and tokens > 0 and tokensUsed + tokens > tokensLimit then
  -- Wait until enough of the oldest token grants are released.
  local members = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
  local needed = tokensUsed + tokens - tokensLimit
  local freed = 0
  local waitUs = hold
  for i = 1, #members, 2 do
    freed = freed + tonumber(string.match(members[i], '|(%d+)$'))
    if freed >= needed then
      waitUs = tonumber(members[i + 1]) + hold - now
      break
    end
  end
  return deny('tokens', waitUs, waitUs)
end

-- Half-open after a 429's pause (slow-down.lua sets `probe` to 0 with the pause): one call, the probe, goes first and
-- the rest wait for its answer (answered.lua clears `probe`; another 429 pauses again), for at most the probe lease.
-- A provider still refusing meets one call per pause instead of every free slot's (no storm of 429s, no churn).
local probe = redis.call('HGET', KEYS[1], 'probe')
local isProbe = 0
if probe then
  local leaseUs = tonumber(ARGV[10] or '0') * 1000
  if probe ~= '0' and now - tonumber(probe) < leaseUs then
    -- Ask again soon: the probe's answer usually comes within a call's time, and clears this at once.
    local poll = math.min(tonumber(probe) + leaseUs - now, PROBE_POLL_US)
    return deny('probe', poll, poll)
  end
  if probe ~= '0' then
    -- The probe's answer never came within the lease (its worker died, its call hangs): open again.
    redis.call('HDEL', KEYS[1], 'probe')
  else
    isProbe = 1
  end
end

local grant = id .. '@' .. string.format('%.0f', now)
local lease = tonumber(ARGV[9] or '0')
local counted = now + lease * 1000
local ttl = math.floor(hold / 1000) * 2 + lease + 1000
-- a short-lived grant never cuts the life of a leased one
redis.call('ZADD', KEYS[2], counted, grant)
keepFor(KEYS[2], ttl)
if tokensLimit > 0 and tokens > 0 then
  -- '%.0f': Lua writes a number of 1e14 or more as 1e+14, which the readers' '|(%d+)$' does not match.
  redis.call('ZADD', KEYS[3], counted, grant .. '|' .. string.format('%.0f', tokens))
  keepFor(KEYS[3], ttl)
  tokensUsed = redis.call('HINCRBY', KEYS[1], 'tokens_used', tokens)
end
redis.call('ZREM', waitKey, id)
-- Fair share: this rank is served; every lower rank with callers waiting is owed one grant more.
redis.call('HDEL', KEYS[1], 'owed:' .. rank)
for r = rank + 1, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[5 + r], '-inf', now)
  if redis.call('ZCARD', KEYS[5 + r]) > 0 then
    redis.call('HINCRBY', KEYS[1], 'owed:' .. r, 1)
  else
    -- Nobody of that rank waits: what it was owed lapses with its wait.
    redis.call('HDEL', KEYS[1], 'owed:' .. r)
  end
end
if isProbe == 1 then
  redis.call('HSET', KEYS[1], 'probe', string.format('%.0f', now))
end
return {1, 0, 'granted', limit, effective, used + 1, 0, tokensUsed, now, tokens, isProbe}
