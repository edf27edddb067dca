-- Give a claimed job back to the queue for another worker (shutdown, lost slot): acknowledge the
-- entry and add the same job as a new entry, atomically. KEYS[1] stream.
-- ARGV[1] group, ARGV[2] entry id, ARGV[3..] field/value pairs. Returns the new entry id, or false
-- when the entry was no longer pending (someone else holds or finished it).
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return false
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
