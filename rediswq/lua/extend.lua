--[[ extend: push the deadlines of leases still held to now + lease_ms.

KEYS
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
ARGV
  ARGV[1] lease_ms     the new lease length from now, in milliseconds
  ARGV[2] ...          handles of the leases to extend
Returns {deadline_ms, lost}
  deadline_ms  the new deadline (Redis's clock)
  lost         1-based positions of the handles whose lease no longer held (not extended)

Check, then write (rediswq/lua/README.md). ZADD is refused on a full (noeviction) Redis when it is a
script's first write, and renewals must go on then (or held items would be taken over and redone):
so the first write is a ZREM of a member no lease has (''), which Redis always allows, and after
which it allows the ZADDs. Moving a score takes no memory.
]]
local leased = KEYS[3]

checked('zset', 'ZCARD', leased)
local deadline_ms = clock_ms() + tonumber(ARGV[1])

redis.call('ZREM', leased, '')
local lost = {}
for i = 2, #ARGV do
  -- XX: never re-create a lease that expired and was reclaimed meanwhile.
  if redis.call('ZADD', leased, 'XX', 'CH', deadline_ms, ARGV[i]) == 0
      and not redis.call('ZSCORE', leased, ARGV[i]) then
    lost[#lost + 1] = i - 1
  end
end
return {deadline_ms, lost}
