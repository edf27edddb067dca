-- Sets a limit group's limit for the whole fleet. Permits already granted stay in the window, so a
-- change never hands out a fresh burst (Redisson's setRate deletes them) and is never ignored
-- (Redisson's trySetRate keeps the old rate).
--
-- A wider window reaches back past what the limiter remembers: it kept only the old window's grants (plus
-- guard). The calls the old limit allowed in that unremembered stretch are counted as made, as placeholder
-- grants spread over it that leave the new window as real ones would (10 per 1 s widened to 600 per 60 s
-- grants about 10 a second until the placeholders have left, not 590 at once). The same for tokens.
--
-- KEYS[1] group hash, KEYS[2] its requests zset, KEYS[3] its tokens zset (acquire.lua)
-- ARGV[1] mode: 'config' (a worker starting with its configured limit: applied unless an operator's
--         runtime change is in force), 'api' (an operator's runtime change), 'reset' (back to the configuration)
-- ARGV[2..5] limit, window_ms, tokens_limit, guard_ms
-- Returns {changed 0|1, source, limit, window_ms, tokens_limit, guard_ms} as stored afterwards.
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stored = redis.call('HMGET', KEYS[1], 'source', 'limit', 'window_ms', 'tokens_limit', 'guard_ms')
local mode = ARGV[1]
if mode == 'config' and stored[1] == 'api' then
  return {0, 'api', stored[2], stored[3], stored[4], stored[5]}
end
local source = mode == 'api' and 'api' or 'config'
if stored[1] == source and stored[2] == ARGV[2] and stored[3] == ARGV[3] and stored[4] == ARGV[4] and stored[5] == ARGV[5] then
  return {0, source, stored[2], stored[3], stored[4], stored[5]}
end
redis.call('HSET', KEYS[1], 'limit', ARGV[2], 'window_ms', ARGV[3], 'tokens_limit', ARGV[4], 'guard_ms', ARGV[5],
  'source', source, 'updated_at', nowMs)
if stored[2] and stored[3] and stored[5] then
  local oldHold = (tonumber(stored[3]) + tonumber(stored[5])) * 1000
  local newHold = (tonumber(ARGV[3]) + tonumber(ARGV[5])) * 1000
  local span = newHold - oldHold
  if span > 0 then
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local from = now - newHold
    local ttl = math.floor(newHold / 1000) * 2 + 1000
    -- Placeholders for calls: at most what the old limit allowed in the stretch, never more than the new limit,
    -- nor than 100,000 (a member each: a limit of millions an hour must not make this script write millions).
    local calls = math.min(tonumber(ARGV[2]), math.floor(tonumber(stored[2]) * span / oldHold), 100000)
    -- ZADD 500 at a time: a limit of thousands must not mean thousands of calls, nor one call past Lua's stack.
    local batch = {}
    for i = 0, calls - 1 do
      batch[#batch + 1] = from + math.floor((i + 0.5) * span / calls)
      batch[#batch + 1] = 'widened@' .. nowMs .. '#' .. i
      if #batch == 1000 or i == calls - 1 then
        redis.call('ZADD', KEYS[2], unpack(batch))
        batch = {}
      end
    end
    if calls > 0 then
      keepFor(KEYS[2], ttl)
    end
    -- Tokens, in up to 20 placeholder grants: the old token limit's share of the stretch, within the new limit.
    local oldTokens = tonumber(stored[4] or '0')
    local newTokens = tonumber(ARGV[4])
    if oldTokens > 0 and newTokens > 0 then
      local tokens = math.min(newTokens, math.floor(oldTokens * span / oldHold))
      local parts = math.min(20, tokens)
      local given = 0
      for i = 0, parts - 1 do
        -- Written with '%.0f': Lua writes a number of 1e14 or more as 1e+14, which '|(%d+)$' does not read back.
        local share = math.floor(tokens * (i + 1) / parts) - given
        given = given + share
        redis.call('ZADD', KEYS[3], from + math.floor((i + 0.5) * span / parts), 'widened@' .. nowMs .. '#' .. i .. '|' .. string.format('%.0f', share))
      end
      if given > 0 then
        redis.call('HINCRBY', KEYS[1], 'tokens_used', given)
        keepFor(KEYS[3], ttl)
      end
    end
  end
end
local effective = redis.call('HGET', KEYS[1], 'effective')
if effective and tonumber(effective) > tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'effective', ARGV[2])
end
return {1, source, ARGV[2], ARGV[3], ARGV[4], ARGV[5]}
