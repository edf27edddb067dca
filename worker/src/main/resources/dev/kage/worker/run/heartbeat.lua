-- A worker's heartbeat: its hash and the hash's expiry in one step, so a worker that dies between the two cannot leave
-- a heartbeat that never expires (its entries would never be reclaimed).
-- KEYS[1]  kage:worker:<id>
-- ARGV[1]  TTL in ms; ARGV[2..] field, value, ...
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
