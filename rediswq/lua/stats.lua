--[[ stats: one consistent snapshot of the queue (the inbox counted as pending).

A script rather than a MULTI, because the inbox may be another application's key of another type:
only a script can look at its type and its length in the same atomic step.

KEYS
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
The leased zset's sentinel member (score +inf, see rediswq/_keys.py) is not a lease: it is not counted.
Returns {pending, leased, delayed, dead, meta, inbox, next_retry_in_ms}, meta the flat HGETALL of the
meta hash, inbox the length of the inbox alone (0 when it is not a list), next_retry_in_ms the time from
now (Redis's clock) to the earliest delayed item's due time (0 if due already, -1 when nothing is
delayed). Writes nothing; a key of the wrong type is an error naming it.
]]

local inbox = 0
if redis.call('TYPE', KEYS[1]).ok == 'list' then
  inbox = redis.call('LLEN', KEYS[1])
end
local next_retry_in_ms = -1
local first = checked('zset', 'ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
if #first == 2 then
  next_retry_in_ms = math.max(0, math.floor(tonumber(first[2]) - clock_ms()))
end
return {
  checked('list', 'LLEN', KEYS[2]) + inbox,
  checked('zset', 'ZCARD', KEYS[3]) - (redis.call('ZSCORE', KEYS[3], SENTINEL) and 1 or 0),
  checked('zset', 'ZCARD', KEYS[5]),
  checked('hash', 'HLEN', KEYS[6]),
  checked('hash', 'HGETALL', KEYS[8]),
  inbox,
  next_retry_in_ms,
}
