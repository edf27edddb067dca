-- The fleet's default period limits (FleetBudgetDefaults): one hash, fields '<scope>:<field>' where scope is 'tenant'
-- or 'agent:<name>' and field one of day_tokens, day_usd, month_tokens, month_usd (tokens, micro-USD; 0 = none).
-- KEYS[1] the hash
-- ARGV[1] 'publish' (a worker starting: its configuration becomes the fleet's, the last started wins) or 'absent' (a
--         process finding a scope unset: its configuration is stored unless another process stored one first)
-- ARGV[2..] groups of 4 field/value pairs, each group one scope; 'absent' writes a group only when none of its fields
--         exists, so two processes racing never leave a scope half one's and half the other's.
-- Returns {the given fields' values before, in order ('' for none), then the whole hash as field/value pairs}.
local before = {}
for i = 2, #ARGV, 2 do
  before[#before + 1] = redis.call('HGET', KEYS[1], ARGV[i]) or ''
end
for g = 2, #ARGV, 8 do
  local write = ARGV[1] == 'publish'
  if not write then
    write = true
    for i = g, g + 6, 2 do
      if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
        write = false
      end
    end
  end
  if write then
    redis.call('HSET', KEYS[1], unpack(ARGV, g, g + 7))
  end
end
return {before, redis.call('HGETALL', KEYS[1])}
