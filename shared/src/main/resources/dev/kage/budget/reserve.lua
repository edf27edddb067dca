-- Reserves tokens and dollars in every pool of KEYS[5..] at once, all or nothing, under hold ARGV[1].
-- KEYS: 1 holds, 2 expiry, 3 marker (hash keeping s:<hold> for settled holds and j:<job> for a job's
-- current hold; per task, never a period's pool, so a hold is known after midnight), 4 operator limits
-- (hash), 5.. pools.
-- ARGV: 1 hold id, 2 job id (a new hold for the same job releases the old one: a reclaimed delivery),
-- 3 tokens, 4 micro-USD, 5 'enforce' or 'log', 6 hold lifetime ms, 7 the marker's TTL ms ('0': the marker is
-- one of the pools and has its own), then per pool 4 values:
-- default token limit, default USD limit (micros), operator-limit field prefix ('' = the limit is set
-- once, when the pool is new), pool TTL ms (set when the pool is new; a '' pool's TTL is renewed on use).
-- Returns {status (1 held, 2 already held or settled, 0 refused), refused pool index, refused kind
-- ('tokens'|'usd'|''), holds superseded, holds expired, then per pool 6 figures (pool_state)}.
-- The holds hash and the expiry set need no TTL: Redis deletes them when their last hold ends.
local holds, expiry, marker, limits = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, job = ARGV[1], ARGV[2]
local tokens, usd = num(ARGV[3]), num(ARGV[4])
local enforce = ARGV[5] == 'enforce'
local now = now_ms()
local expired = sweep(holds, expiry, now, 16)
local npools = #KEYS - 4
local states = {}

local function reply(status, index, kind, superseded)
  local out = {status, index, kind, superseded, expired}
  for i = 1, npools do
    for _, v in ipairs(states[i] or pool_state(KEYS[4 + i])) do
      out[#out + 1] = v
    end
  end
  return out
end

if redis.call('HEXISTS', holds, id) == 1 or redis.call('HEXISTS', marker, 's:' .. id) == 1 then
  return reply(2, 0, '', 0)
end
local superseded = 0
local previous = redis.call('HGET', marker, 'j:' .. job)
if previous and previous ~= id then
  superseded = release_hold(holds, expiry, previous)
end

-- Each pool's figures and the limit that applies now.
local overrides = nil
for i = 1, npools do
  local pool = KEYS[4 + i]
  local a = 7 + (i - 1) * 4
  local f = redis.call('HMGET', pool, 'limit', 'used', 'reserved', 'usd_limit', 'usd_used', 'usd_reserved')
  local s = {num(f[1]), num(f[2]), num(f[3]), num(f[4]), num(f[5]), num(f[6])}
  local new = not f[1]
  local prefix = ARGV[a + 3]
  local lt, lu = s[1], s[4]
  if prefix ~= '' then
    if overrides == nil then
      overrides = {}
      local h = redis.call('HGETALL', limits)
      for k = 1, #h, 2 do
        overrides[h[k]] = h[k + 1]
      end
    end
    lt = num(overrides[prefix .. 'tokens'] or ARGV[a + 1])
    lu = num(overrides[prefix .. 'usd'] or ARGV[a + 2])
  elseif new then
    lt, lu = num(ARGV[a + 1]), num(ARGV[a + 2])
  end
  if new or lt ~= s[1] or lu ~= s[4] then
    redis.call('HSET', pool, 'limit', string.format('%d', lt), 'usd_limit', string.format('%d', lu))
    s[1], s[4] = lt, lu
  end
  if new then
    redis.call('PEXPIRE', pool, ARGV[a + 4])
  end
  states[i] = s
end

if enforce then
  for i = 1, npools do
    local s = states[i]
    if tokens > 0 and s[1] > 0 and s[2] + s[3] + tokens > s[1] then
      return reply(0, i, 'tokens', superseded)
    end
    -- A pool whose settled dollars reached its limit refuses even a run that asks for none: an agent without prices
    -- (Claude reports its cost only when it ends) would otherwise pass a spent dollar limit for ever.
    if s[4] > 0 and ((usd > 0 and s[5] + s[6] + usd > s[4]) or s[5] >= s[4]) then
      return reply(0, i, 'usd', superseded)
    end
  end
end

local record = {string.format('%d', tokens), string.format('%d', usd)}
for i = 1, npools do
  local pool = KEYS[4 + i]
  add(pool, 'reserved', tokens)
  add(pool, 'usd_reserved', usd)
  states[i][3] = states[i][3] + tokens
  states[i][6] = states[i][6] + usd
  if ARGV[7 + (i - 1) * 4 + 3] == '' then
    redis.call('PEXPIRE', pool, ARGV[7 + (i - 1) * 4 + 4])
  end
  record[#record + 1] = pool
end
redis.call('HSET', holds, id, table.concat(record, ' '))
redis.call('ZADD', expiry, now + num(ARGV[6]), id)
redis.call('HSET', marker, 'j:' .. job, id)
if num(ARGV[7]) > 0 then
  redis.call('PEXPIRE', marker, ARGV[7])
end
return reply(1, 0, '', superseded)
