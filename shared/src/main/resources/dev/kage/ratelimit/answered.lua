-- The provider answered the probe after a 429's pause without pushing back: the group opens again for everyone.
-- KEYS[1] group hash; ARGV[1] the probe's grant time (µs, as acquire.lua returned it).
-- Returns 1 when this was the probe still awaited.
if redis.call('HGET', KEYS[1], 'probe') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'probe')
  return 1
end
return 0
