-- Sets a limit group's limit for the whole fleet. Permits already granted stay in the window, so a
-- change never hands out a fresh burst (Redisson's setRate deletes them) and is never ignored
-- (Redisson's trySetRate keeps the old rate).
--
-- KEYS[1] group hash
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
local effective = redis.call('HGET', KEYS[1], 'effective')
if effective and tonumber(effective) > tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'effective', ARGV[2])
end
return {1, source, ARGV[2], ARGV[3], ARGV[4], ARGV[5]}
