--[[ lease: complete the leases a worker is done with, then lease it up to `count` more items.

Completing and leasing in one call is what makes a worker cost one round trip per item. Before taking
items it returns at most `reclaim_limit` expired leases (to pending, or to the dead letters once their
attempts are spent) and moves at most as many due retries to pending, so each call is O(count +
reclaim_limit), whatever the length of the queue or the number of leases.

KEYS
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
ARGV
  ARGV[1] count          items to lease (0: only complete)
  ARGV[2] lease_ms       lease length in milliseconds
  ARGV[3] max_attempts   an expired lease of an item leased this many times goes to the dead letters
  ARGV[4] reclaim_limit  at most this many expired leases and as many due retries are moved per call
  ARGV[5] worker         the holder's name, kept in the handle (shown by stats)
  ARGV[6] until_closed   1: "drained" also requires the queue to be closed
  ARGV[7], ARGV[8] ...   pairs (handle, id) of leases to complete first
Sentinels (see rediswq/_keys.py): leasing writes a permanent member to `leased` (score +inf) and a
permanent field "" to `payloads`, each longer than 64 bytes, so Redis keeps both keys as a skiplist and
a hashtable instead of a listpack that every batch's ZADD/HSET/HDEL would scan. Readers ignore them:
the drained check subtracts the sentinel, the wait hint skips +inf, reclaim never reaches +inf.
Returns {status, wait_ms, deadline_ms, lost, items}
  status       0 leased (or count was 0); 1 nothing to lease now; 2 drained
  wait_ms      with status 1: ms until the earliest lease deadline or retry due; -1 if there is none
  deadline_ms  the deadline of the new leases
  lost         1-based positions of the pairs whose lease no longer held (nothing done for them)
  items        flat {id, attempt, payload, handle, ...} for each new lease
]]
local inbox, pending, leased, payloads = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
-- Kept in step with rediswq/_keys.py (LEASED_SENTINEL, PAYLOADS_SENTINEL_FIELD).
local SENTINEL = 'rediswq:sentinel: keeps this key out of the small listpack encoding; never a lease'
local delayed, dead, ids, meta = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local count = tonumber(ARGV[1])
local lease_ms = tonumber(ARGV[2])
local max_attempts = tonumber(ARGV[3])
local reclaim_limit = tonumber(ARGV[4])
local worker = ARGV[5]
local until_closed = ARGV[6] == '1'

-- Lua's unpack() stops at about 8000 values, so variadic commands go in slices (`step` even for pairs).
local function call_sliced(command, key, values, step)
  for i = 1, #values, step do
    redis.call(command, key, unpack(values, i, math.min(i + step - 1, #values)))
  end
end

local function id_key(id)
  if type(id) == 'number' then return string.format('%d', id) end
  return id
end

-- Redis's clock, the one every worker shares.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Complete. ZREM is the ownership check: the handle names this lease and no later one.
local lost, done = {}, {}
for i = 7, #ARGV, 2 do
  if redis.call('ZREM', leased, ARGV[i]) == 1 then
    local key = ARGV[i + 1]
    done[#done + 1] = key
    -- Only caller-given ids (never all digits) are tracked in the ids set.
    if string.find(key, '%D') then redis.call('SREM', ids, key) end
  else
    lost[#lost + 1] = (i - 5) / 2
  end
end
if #done > 0 then
  call_sliced('HDEL', payloads, done, 1000)
  redis.call('HINCRBY', meta, 'completed', #done)
end
if count == 0 then
  return {0, -1, 0, lost, {}}
end

-- Reclaim expired leases, oldest deadline first.
local expired = redis.call('ZRANGEBYSCORE', leased, '-inf', now_ms, 'LIMIT', 0, reclaim_limit)
if #expired > 0 then
  redis.call('ZREMRANGEBYRANK', leased, 0, #expired - 1)
  for first = 1, #expired, 1000 do
    local last = math.min(first + 999, #expired)
    local handles, keys = {}, {}
    for i = first, last do
      local h = cmsgpack.unpack(expired[i])
      handles[#handles + 1] = h
      keys[#keys + 1] = id_key(h[2])
    end
    local stored = redis.call('HMGET', payloads, unpack(keys))
    redis.call('HDEL', payloads, unpack(keys))
    local back = {}
    for i, h in ipairs(handles) do
      local id, attempt, payload = h[2], h[3], stored[i]
      if attempt >= max_attempts then
        redis.call('HSET', dead, keys[i], cmsgpack.pack({id, attempt, payload, 'lease expired', now_ms}))
        if type(id) == 'string' then redis.call('SREM', ids, keys[i]) end
        redis.call('HINCRBY', meta, 'dead_lettered', 1)
      else
        back[#back + 1] = cmsgpack.pack({id, attempt, payload})
      end
    end
    if #back > 0 then redis.call('LPUSH', pending, unpack(back)) end
  end
end
if #expired > 0 then redis.call('HINCRBY', meta, 'expired', #expired) end

-- Due retries go to the head of the queue: they have waited their backoff already.
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now_ms, 'LIMIT', 0, reclaim_limit)
if #due > 0 then
  call_sliced('ZREM', delayed, due, 1000)
  call_sliced('LPUSH', pending, due, 1000)
end

-- Take pending items, then raw ones from the inbox, giving those an id and an envelope now.
local envelopes = redis.call('LPOP', pending, count) or {}
local taken = {}
for i, e in ipairs(envelopes) do taken[i] = cmsgpack.unpack(e) end
if #taken < count and redis.call('TYPE', inbox).ok == 'list' then
  local raw = redis.call('LPOP', inbox, count - #taken) or {}
  if #raw > 0 then
    local first = redis.call('HINCRBY', meta, 'seq', #raw) - #raw + 1
    redis.call('HINCRBY', meta, 'enqueued', #raw)
    for i, payload in ipairs(raw) do taken[#taken + 1] = {first + i - 1, 0, payload} end
  end
end

if #taken == 0 then
  local closed = redis.call('HGET', meta, 'closed')
  local busy = redis.call('ZCARD', leased) - (redis.call('ZSCORE', leased, SENTINEL) and 1 or 0)
    + redis.call('ZCARD', delayed)
  if busy == 0 and (closed or not until_closed) then
    return {2, -1, 0, lost, {}}
  end
  local wait_ms = -1
  for _, key in ipairs({leased, delayed}) do
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if #first > 0 and first[2] ~= 'inf' then
      local w = math.max(0, tonumber(first[2]) - now_ms)
      if wait_ms < 0 or w < wait_ms then wait_ms = w end
    end
  end
  return {1, wait_ms, 0, lost, {}}
end

local token = redis.call('HINCRBY', meta, 'token', #taken) - #taken
local deadline_ms = now_ms + lease_ms
local items, scored, stored = {}, {}, {}
for i, e in ipairs(taken) do
  local id, attempt, payload = e[1], e[2] + 1, e[3]
  local key = id_key(id)
  local handle = cmsgpack.pack({token + i, id, attempt, worker, now_ms})
  items[#items + 1] = key
  items[#items + 1] = attempt
  items[#items + 1] = payload
  items[#items + 1] = handle
  scored[#scored + 1] = deadline_ms
  scored[#scored + 1] = handle
  stored[#stored + 1] = key
  stored[#stored + 1] = payload
end
redis.call('ZADD', leased, 'NX', 'inf', SENTINEL)
redis.call('HSETNX', payloads, '', SENTINEL)
call_sliced('ZADD', leased, scored, 2000)
call_sliced('HSET', payloads, stored, 2000)
return {0, -1, deadline_ms, lost, items}
