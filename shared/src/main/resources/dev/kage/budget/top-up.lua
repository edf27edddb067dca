-- Grows open hold ARGV[1] while its agent runs: by the wanted tokens and dollars when every pool has
-- room, else by what is needed or half of what is left when that is more, else not at all; a negative
-- amount gives back. Half, not all: the jobs running beside it draw on the same pools, and one that took
-- the rest would have them stopped while it held room it may never use. In log mode it always grows by the
-- wanted amount. Any call renews the hold's lifetime (ARGV[7] ms from now): a running agent's hold
-- does not lapse.
-- The hold's record decides which pools it grows in (those it was taken in), whatever the caller's copy of
-- the hold names: a settlement releases what the record holds from the record's pools. They share the holds
-- hash's hash tag (same slot).
-- Once per call: a call id the hold has grown by already (Lettuce sends a command again after a reconnect
-- when its reply was lost) returns that growth again and changes nothing; the hold's last 8 growths are kept
-- beside its record (field '<id>#topups', removed with it).
-- KEYS: 1 holds, 2 expiry, 3.. the caller's idea of the hold's pools (unused when the record exists).
-- ARGV: 1 hold id, 2 tokens needed, 3 tokens wanted, 4 micro-USD needed, 5 micro-USD wanted, 6 mode,
-- 7 hold lifetime ms, 8 call id ('' for none).
-- Returns {status (1 grown, 0 refused, -1 no such open hold), tokens granted, micro-USD granted,
-- the tightest pool's key ('' when no pool limits tokens), tokens left in it (-1 when no pool limits tokens)}; a
-- refusal names the pool that refused and what it has left, and adds the kind that ran out ('tokens' or 'usd').
local holds, expiry = KEYS[1], KEYS[2]
local id = ARGV[1]
local record = redis.call('HGET', holds, id)
if not record then
  return {-1, 0, 0, '', -1}
end
redis.call('ZADD', expiry, now_ms() + num(ARGV[7]), id)
local call = ARGV[8] or ''
local done_field = id .. '#topups'
local done = call ~= '' and (redis.call('HGET', holds, done_field) or '') or ''
for entry in string.gmatch(done, '[^ ]+') do
  local c, gt, gu = string.match(entry, '^([^,]+),([^,]+),([^,]+)$')
  if c == call then
    return {1, num(gt), num(gu), '', -1}
  end
end
local need_t, want_t, need_u, want_u = num(ARGV[2]), num(ARGV[3]), num(ARGV[4]), num(ARGV[5])
local parts = split(record)
local pools = {}
for i = 3, #parts do
  pools[#pools + 1] = parts[i]
end
local npools = #pools
-- Room in the limited pools; a pool already past its limit (an overrun settled, a limit lowered) has none.
local room_t, room_u, tight, tight_u = nil, nil, 0, 0
if ARGV[6] == 'enforce' then
  for i = 1, npools do
    local s = pool_state(pools[i])
    if s[1] > 0 then
      local r = math.max(0, s[1] - s[2] - s[3])
      if room_t == nil or r < room_t then room_t = r; tight = i end
    end
    if s[4] > 0 then
      local r = math.max(0, s[4] - s[5] - s[6])
      if room_u == nil or r < room_u then room_u = r; tight_u = i end
    end
  end
end
local function grant(need, want, room)
  if room == nil or want <= room then
    return want
  end
  return math.min(want, math.max(need, math.floor(room / 2)))
end
local grant_t, grant_u = grant(need_t, want_t, room_t), grant(need_u, want_u, room_u)
if room_t ~= nil and grant_t > room_t then
  return {0, 0, 0, pools[tight] or '', room_t, 'tokens'}
end
if room_u ~= nil and grant_u > room_u then
  return {0, 0, 0, pools[tight_u] or '', room_u, 'usd'}
end
parts[1] = string.format('%d', num(parts[1]) + grant_t)
parts[2] = string.format('%d', num(parts[2]) + grant_u)
for i = 1, npools do
  add(pools[i], 'reserved', grant_t)
  add(pools[i], 'usd_reserved', grant_u)
end
redis.call('HSET', holds, id, table.concat(parts, ' '))
if call ~= '' then
  local kept = {}
  for entry in string.gmatch(done, '[^ ]+') do
    kept[#kept + 1] = entry
  end
  kept[#kept + 1] = call .. ',' .. string.format('%d', grant_t) .. ',' .. string.format('%d', grant_u)
  while #kept > 8 do
    table.remove(kept, 1)
  end
  redis.call('HSET', holds, done_field, table.concat(kept, ' '))
end
return {1, grant_t, grant_u, pools[tight] or '', room_t or -1}
