-- Append many events to the capped event stream in one call, in order, each as its own entry (as XADD MAXLEN ~ one by
-- one would). KEYS[1] the event stream. ARGV[1] about how many entries it keeps; then per event: its field count n and
-- its n field/value strings. Returns how many were added.
local at = 2
local added = 0
while at <= #ARGV do
  local n = tonumber(ARGV[at])
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, at + 1, at + n))
  added = added + 1
  at = at + 1 + n
end
return added
