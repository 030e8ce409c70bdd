--[[ stats: one consistent snapshot of the queue (the inbox counted as pending).

A script rather than a MULTI, because the inbox may be another application's key of another type:
only a script can look at its type and its length in the same atomic step.

KEYS
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
The leased zset's sentinel member (score +inf, see rediswq/_keys.py) is not a lease: it is not counted.
Returns {pending, leased, delayed, dead, meta}, meta the flat HGETALL of the meta hash
]]
-- Kept in step with rediswq/_keys.py (LEASED_SENTINEL) and lease.lua.
local SENTINEL = 'rediswq:sentinel: keeps this key out of the small listpack encoding; never a lease'
local pending = redis.call('LLEN', KEYS[2])
if redis.call('TYPE', KEYS[1]).ok == 'list' then
  pending = pending + redis.call('LLEN', KEYS[1])
end
return {
  pending,
  redis.call('ZCARD', KEYS[3]) - (redis.call('ZSCORE', KEYS[3], SENTINEL) and 1 or 0),
  redis.call('ZCARD', KEYS[5]),
  redis.call('HLEN', KEYS[6]),
  redis.call('HGETALL', KEYS[8]),
}
