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
  ARGV[7] ...            handles of leases to complete first
Returns a flat array {status, wait_ms, deadline_ms, n_lost, lost..., then a pair per new lease}
  status       0 leased (or count was 0); 1 nothing to lease now; 2 drained
  wait_ms      with status 1: ms until the earliest lease deadline or retry due; -1 if there is none
  deadline_ms  the deadline of the new leases
  n_lost, lost the 1-based positions of the handles whose lease no longer held (nothing done for them)
  pairs        {handle, payload}: the payload when it is kept in `payloads`, else false (it is in the
               handle)

A handle is the pending envelope as it was popped, followed by msgpack token, worker, leased_at_ms
(see rediswq/_keys.py): leasing copies bytes instead of decoding and re-encoding them. This runs once
per item, so it also avoids what costs most in Redis's Lua: numbers passed to redis.call (formatted
with %.17g; string.format('%d') is cheaper), tables, and msgpack decoding.
]]
local inbox, pending, leased, payloads = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local delayed, dead, ids, meta = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
-- Kept in step with rediswq/_keys.py (LEASED_SENTINEL, EMBED_LIMIT).
local SENTINEL = 'rediswq:sentinel: keeps this key out of the small listpack encoding; never a lease'
local EMBED_LIMIT = 256
local count = tonumber(ARGV[1])
local worker = ARGV[5]
local until_closed = ARGV[6] == '1'

local function int(n) return string.format('%d', n) end

-- Lua's unpack() stops at about 8000 values, so variadic commands go in slices (`step` even for pairs).
local function call_sliced(command, key, values, step)
  for i = 1, #values, step do
    redis.call(command, key, unpack(values, i, math.min(i + step - 1, #values)))
  end
end

local function id_key(id)
  if type(id) == 'number' then return int(id) end
  return id
end

-- Most handles start with a 3-item envelope (0x93) whose id the queue assigned (a msgpack int):
-- nothing to clean up besides the lease. The rest (a caller's id, a payload kept apart) are decoded.
local function plain(handle)
  local b1, b2 = string.byte(handle, 1, 2)
  return b1 == 0x93 and (b2 < 0xa0 or (b2 > 0xbf and b2 < 0xd9) or b2 > 0xdb)
end

-- Redis's clock, the one every worker shares.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_text = int(now_ms)

-- Complete. ZREM is the ownership check: the handle names this lease and no later one.
local reply = {0, -1, 0, 0}
local done, kept = 0, {}
for i = 7, #ARGV do
  local handle = ARGV[i]
  if redis.call('ZREM', leased, handle) == 1 then
    done = done + 1
    if not plain(handle) then
      local e = cmsgpack.unpack(handle)
      local key = id_key(e[1])
      if e[3] == nil then kept[#kept + 1] = key end
      if type(e[1]) == 'string' then redis.call('SREM', ids, key) end
    end
  else
    reply[4] = reply[4] + 1
    reply[#reply + 1] = i - 6
  end
end
if #kept > 0 then call_sliced('HDEL', payloads, kept, 1000) end
if done > 0 then redis.call('HINCRBY', meta, 'completed', int(done)) end
if count == 0 then
  return reply
end

-- Reclaim expired leases, oldest deadline first.
local expired = redis.call('ZRANGEBYSCORE', leased, '-inf', now_text, 'LIMIT', '0', ARGV[4])
if #expired > 0 then
  local max_attempts = tonumber(ARGV[3])
  redis.call('ZREMRANGEBYRANK', leased, 0, #expired - 1)
  for first = 1, #expired, 1000 do
    local last = math.min(first + 999, #expired)
    local envelopes, fetch = {}, {}
    for i = first, last do
      local e = cmsgpack.unpack(expired[i])
      envelopes[#envelopes + 1] = e
      if e[3] == nil then fetch[#fetch + 1] = id_key(e[1]) end
    end
    local stored = {}
    if #fetch > 0 then
      stored = redis.call('HMGET', payloads, unpack(fetch))
      redis.call('HDEL', payloads, unpack(fetch))
    end
    local back, s = {}, 0
    for _, e in ipairs(envelopes) do
      local id, attempt, payload = e[1], e[2] + 1, e[3]
      if payload == nil then
        s = s + 1
        payload = stored[s]
      end
      if attempt >= max_attempts then
        local key = id_key(id)
        redis.call('HSET', dead, key, cmsgpack.pack({id, attempt, payload, 'lease expired', now_ms}))
        if type(id) == 'string' then redis.call('SREM', ids, key) end
        redis.call('HINCRBY', meta, 'dead_lettered', 1)
      else
        back[#back + 1] = cmsgpack.pack({id, attempt, payload})
      end
    end
    if #back > 0 then redis.call('LPUSH', pending, unpack(back)) end
  end
  redis.call('HINCRBY', meta, 'expired', #expired)
end

-- Due retries go to the head of the queue: they have waited their backoff already.
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now_text, 'LIMIT', '0', ARGV[4])
if #due > 0 then
  call_sliced('ZREM', delayed, due, 1000)
  call_sliced('LPUSH', pending, due, 1000)
end

-- Take pending items, then raw ones from the inbox, giving those an id and an envelope now.
local taken = redis.call('LPOP', pending, ARGV[1]) or {}
if #taken < count and redis.call('TYPE', inbox).ok == 'list' then
  local raw = redis.call('LPOP', inbox, count - #taken) or {}
  if #raw > 0 then
    local first = redis.call('HINCRBY', meta, 'seq', #raw) - #raw + 1
    redis.call('HINCRBY', meta, 'enqueued', #raw)
    for i, payload in ipairs(raw) do taken[#taken + 1] = cmsgpack.pack({first + i - 1, 0, payload}) end
  end
end

if #taken == 0 then
  local closed = redis.call('HGET', meta, 'closed')
  local busy = redis.call('ZCARD', leased) - (redis.call('ZSCORE', leased, SENTINEL) and 1 or 0)
    + redis.call('ZCARD', delayed)
  if busy == 0 and (closed or not until_closed) then
    reply[1] = 2
    return reply
  end
  local wait_ms = -1
  for _, key in ipairs({leased, delayed}) do
    local soonest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if #soonest > 0 and soonest[2] ~= 'inf' then
      local w = math.max(0, tonumber(soonest[2]) - now_ms)
      if wait_ms < 0 or w < wait_ms then wait_ms = w end
    end
  end
  reply[1], reply[2] = 1, wait_ms
  return reply
end

local token = redis.call('HINCRBY', meta, 'token', int(#taken)) - #taken
local deadline_text = int(now_ms + tonumber(ARGV[2]))
reply[3] = deadline_text
local scored, kept_apart = {}, {}
for i, envelope in ipairs(taken) do
  local payload = false
  if #envelope > EMBED_LIMIT then
    -- A large payload waits in `payloads`, so a handle stays small enough to send back.
    local e = cmsgpack.unpack(envelope)
    payload = e[3]
    kept_apart[#kept_apart + 1] = id_key(e[1])
    kept_apart[#kept_apart + 1] = payload
    envelope = cmsgpack.pack({e[1], e[2]})
  end
  local handle = envelope .. cmsgpack.pack(token + i, worker, now_ms)
  scored[#scored + 1] = deadline_text
  scored[#scored + 1] = handle
  reply[#reply + 1] = handle
  reply[#reply + 1] = payload
end
if #taken > 1 then redis.call('ZADD', leased, 'NX', 'inf', SENTINEL) end
call_sliced('ZADD', leased, scored, 2000)
if #kept_apart > 0 then call_sliced('HSET', payloads, kept_apart, 2000) end
return reply
