-- Releases the open hold an earlier delivery of job ARGV[1] took in these pools (a worker that died with it),
-- unless it is hold ARGV[2]: what reserve.lua does on its way to a new hold, for a reservation refused before it got
-- to these pools (the tenant's pools were full: the agent's were never asked). No usage is recorded, as there.
-- KEYS: 1 holds, 2 expiry, 3 marker (the hash keeping j:<job>).
-- Returns 1 when a hold was released.
local previous = redis.call('HGET', KEYS[3], 'j:' .. ARGV[1])
if not previous or previous == ARGV[2] then
  return 0
end
return release_hold(KEYS[1], KEYS[2], previous)
