-- The fleet's default period limits (FleetBudgetDefaults): one hash, fields '<scope>:<field>' where scope is 'tenant'
-- or 'agent:<name>' and field one of day_tokens, day_usd, month_tokens, month_usd (tokens, micro-USD; 0 = none), and
-- '<scope>:published_at', the start (ms) of the worker whose configuration the scope holds (0: stored as 'absent').
-- KEYS[1] the hash
-- ARGV[1] 'publish' (a worker starting: its configuration becomes the fleet's unless a worker started later published
--         already, so a publication Redis could only take late never undoes a later one) or 'absent' (a worker finding
--         a scope unset, Redis having lost it: its configuration is stored unless another process stored one first)
-- ARGV[2] the publishing worker's start (ms since the epoch)
-- ARGV[3..] per scope 9 values: the scope, then its 4 field/value pairs. 'absent' writes a scope only when none of its
--         fields exists, so two processes racing never leave a scope half one's and half the other's.
-- Returns {the given fields' values before, in order ('' for none); per scope 1 written or 0; the whole hash as
-- field/value pairs}.
local before, written = {}, {}
for g = 3, #ARGV, 9 do
  for i = g + 1, g + 7, 2 do
    before[#before + 1] = redis.call('HGET', KEYS[1], ARGV[i]) or ''
  end
end
for g = 3, #ARGV, 9 do
  local scope = ARGV[g]
  local write
  if ARGV[1] == 'publish' then
    local at = redis.call('HGET', KEYS[1], scope .. ':published_at')
    write = not at or tonumber(at) <= tonumber(ARGV[2])
  else
    write = true
    for i = g + 1, g + 7, 2 do
      if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
        write = false
      end
    end
  end
  if write then
    redis.call('HSET', KEYS[1], scope .. ':published_at', ARGV[1] == 'publish' and ARGV[2] or '0', unpack(ARGV, g + 1, g + 8))
  end
  written[#written + 1] = write and 1 or 0
end
return {before, written, redis.call('HGETALL', KEYS[1])}
