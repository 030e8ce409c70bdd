--[[ fail: settle a lease whose item failed: retry it after a backoff, or move it to the dead letters.

KEYS
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
ARGV
  ARGV[1] handle           the lease's handle
  ARGV[2] error            why it failed (kept with the dead letter)
  ARGV[3] retry            1: retry while attempts remain; 0: dead-letter now
  ARGV[4] max_attempts     an item leased this many times is not retried
  ARGV[5] backoff_ms       the first retry's delay; each later one doubles it
  ARGV[6] backoff_cap_ms   the longest delay
Returns {status, outcome, due_ms}
  status   0 settled; 1 the lease no longer held (nothing done)
  outcome  0 retried, due at due_ms (Redis's clock); 1 dead-lettered

Check, then write (rediswq/lua/README.md). The first write is a ZREM, which Redis allows on a full
(noeviction) Redis, and after which it allows the rest: failing a lease works when memory is full.
A held handle that does not decode, or whose kept-apart payload is gone, is quarantined.
]]
local pending, leased, payloads, delayed = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local dead, ids, meta = KEYS[6], KEYS[7], KEYS[8]
local handle, error_text = ARGV[1], ARGV[2]
local retry = ARGV[3] == '1'
local max_attempts = tonumber(ARGV[4])
local backoff_ms, backoff_cap_ms = tonumber(ARGV[5]), tonumber(ARGV[6])

-- Check. --------------------------------------------------------------------------------------------
if not checked('zset', 'ZSCORE', leased, handle) then
  return {1, 0, 0}
end
counters(meta, 'failed', 'retried', 'dead_lettered', 'quarantined')
local now_ms = clock_ms()
-- The handle starts with the envelope the item was leased from (see rediswq/_wire.py).
local e, why = read_handle(handle)
local id, attempt, payload, key
if e then
  id, attempt, payload, key = e[1], e[2] + 1, e[3], id_key(e[1])
  if payload == nil then
    payload = checked('hash', 'HGET', payloads, key)
    if not payload then why = 'its payload is missing from ' .. payloads end
  end
end
local retrying = not why and retry and attempt < max_attempts
if retrying then checked('zset', 'ZCARD', delayed) else checked('hash', 'HLEN', dead) end
if type(id) == 'string' and not retrying then checked('set', 'SCARD', ids) end

-- Write. --------------------------------------------------------------------------------------------
redis.call('ZREM', leased, handle)
if why then
  local record = {}
  quarantine(record, leased, handle, why, now_ms)
  redis.call('HSET', dead, record[1], record[2])
  redis.call('HINCRBY', meta, 'quarantined', 1)
  return {0, 1, 0}
end
if e[3] == nil then redis.call('HDEL', payloads, key) end
redis.call('HINCRBY', meta, 'failed', 1)

if retrying then
  local due_ms = now_ms + math.min(backoff_cap_ms, backoff_ms * 2 ^ (attempt - 1))
  redis.call('ZADD', delayed, due_ms, cmsgpack.pack({id, attempt, payload}))
  redis.call('HINCRBY', meta, 'retried', 1)
  return {0, 0, due_ms}
end
redis.call('HSET', dead, key, cmsgpack.pack({id, attempt, payload, error_text, now_ms}))
if type(id) == 'string' then redis.call('SREM', ids, key) end
redis.call('HINCRBY', meta, 'dead_lettered', 1)
return {0, 1, 0}
