-- Reserves tokens and dollars in every pool of KEYS[5..] at once, all or nothing, under hold ARGV[1].
-- KEYS: 1 holds, 2 expiry, 3 marker (hash keeping s:<hold> for settled holds and j:<job> for a job's
-- current hold; one of the pools), 4 operator limits (hash), 5.. pools.
-- ARGV: 1 hold id, 2 job id (a new hold for the same job releases the old one: a reclaimed delivery),
-- 3 tokens, 4 micro-USD, 5 'enforce' or 'log', 6 hold lifetime ms, 7 TTL ms of the holds and marker keys,
-- then per pool 4 values: default token limit, default USD limit (micros), operator-limit field prefix
-- ('' = the limit is set once, when the pool is new), pool TTL ms.
-- Returns {status (1 held, 2 already held or settled, 0 refused), refused pool index, refused kind
-- ('tokens'|'usd'|''), holds superseded, holds expired, then per pool 6 figures (pool_state)}.
local holds, expiry, marker, limits = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, job = ARGV[1], ARGV[2]
local tokens, usd = num(ARGV[3]), num(ARGV[4])
local enforce = ARGV[5] == 'enforce'
local now = now_ms()
local expired = sweep(holds, expiry, now, 16)

local npools = #KEYS - 4
local function reply(status, index, kind, superseded)
  local out = {status, index, kind, superseded, expired}
  for i = 1, npools do
    for _, v in ipairs(pool_state(KEYS[4 + i])) do
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

for i = 1, npools do
  local pool = KEYS[4 + i]
  local a = 7 + (i - 1) * 4
  local prefix = ARGV[a + 3]
  if prefix == '' then
    redis.call('HSETNX', pool, 'limit', ARGV[a + 1])
    redis.call('HSETNX', pool, 'usd_limit', ARGV[a + 2])
  else
    local o = redis.call('HMGET', limits, prefix .. 'tokens', prefix .. 'usd')
    redis.call('HSET', pool, 'limit', o[1] or ARGV[a + 1], 'usd_limit', o[2] or ARGV[a + 2])
  end
end

if enforce then
  for i = 1, npools do
    local s = pool_state(KEYS[4 + i])
    if tokens > 0 and s[1] > 0 and s[2] + s[3] + tokens > s[1] then
      return reply(0, i, 'tokens', superseded)
    end
    if usd > 0 and s[4] > 0 and s[5] + s[6] + usd > s[4] then
      return reply(0, i, 'usd', superseded)
    end
  end
end

local record = {string.format('%d', tokens), string.format('%d', usd)}
for i = 1, npools do
  local pool = KEYS[4 + i]
  add(pool, 'reserved', tokens)
  add(pool, 'usd_reserved', usd)
  redis.call('PEXPIRE', pool, ARGV[7 + (i - 1) * 4 + 4])
  record[#record + 1] = pool
end
redis.call('HSET', holds, id, table.concat(record, ' '))
redis.call('ZADD', expiry, now + num(ARGV[6]), id)
redis.call('HSET', marker, 'j:' .. job, id)
redis.call('PEXPIRE', holds, ARGV[7])
redis.call('PEXPIRE', expiry, ARGV[7])
return reply(1, 0, '', superseded)
