-- Grows open hold ARGV[1] while its agent runs: by the wanted tokens and dollars when every pool has
-- room, else by what is needed, else not at all. In log mode it always grows by the wanted amount.
-- KEYS: 1 holds, 2 expiry, 3.. the hold's pools.
-- ARGV: 1 hold id, 2 tokens needed, 3 tokens wanted, 4 micro-USD needed, 5 micro-USD wanted, 6 mode.
-- Returns {status (1 grown, 0 refused, -1 no such open hold), tokens granted, micro-USD granted,
-- refusing pool index, tokens left in the tightest pool}.
local holds = KEYS[1]
local id = ARGV[1]
local record = redis.call('HGET', holds, id)
if not record then
  return {-1, 0, 0, 0, 0}
end
local need_t, want_t, need_u, want_u = num(ARGV[2]), num(ARGV[3]), num(ARGV[4]), num(ARGV[5])
local npools = #KEYS - 2
local room_t, room_u, tight = -1, -1, 0
if ARGV[6] == 'enforce' then
  for i = 1, npools do
    local s = pool_state(KEYS[2 + i])
    if s[1] > 0 then
      local r = s[1] - s[2] - s[3]
      if room_t < 0 or r < room_t then room_t = r; tight = i end
    end
    if s[4] > 0 then
      local r = s[4] - s[5] - s[6]
      if room_u < 0 or r < room_u then room_u = r end
    end
  end
end
local grant_t, grant_u = want_t, want_u
if room_t >= 0 and grant_t > room_t then grant_t = room_t end
if room_u >= 0 and grant_u > room_u then grant_u = room_u end
if grant_t < need_t or grant_u < need_u then
  return {0, 0, 0, tight, room_t}
end
local parts = split(record)
parts[1] = string.format('%d', num(parts[1]) + grant_t)
parts[2] = string.format('%d', num(parts[2]) + grant_u)
for i = 1, npools do
  add(KEYS[2 + i], 'reserved', grant_t)
  add(KEYS[2 + i], 'usd_reserved', grant_u)
end
redis.call('HSET', holds, id, table.concat(parts, ' '))
return {1, grant_t, grant_u, tight, room_t}
