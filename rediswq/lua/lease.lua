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
Returns a flat array {status, wait_ms, deadline_ms, n_lost, n_kept, lost..., handles..., kept...}
  status       0 leased (or count was 0); 1 nothing to lease now; 2 drained; 3 missing: no queue of
               this name exists (no meta, nothing in any key); 4 damaged: meta is gone while other
               keys hold data (its counters vanished); 5 out of memory: Redis refuses new leases
               (the completions were done)
               With 3 and 4 nothing was written.
  wait_ms      with status 1: ms until the earliest lease deadline or retry due; -1 if there is none
               (0: entries were quarantined, call again)
  deadline_ms  the deadline of the new leases
  n_lost, lost the 1-based positions, ascending, of the handles whose lease no longer held (nothing done
               for them)
  handles      one per new lease, its payload in it
  n_kept, kept a pair {position among the handles, payload} per new lease whose payload is kept in
               `payloads` instead (its handle holds [id, attempts] alone)

A handle is the pending envelope as it was taken, followed by msgpack token, worker, leased_at_ms,
lease_ms (see rediswq/_keys.py): leasing copies bytes instead of decoding and re-encoding them, and
the four values after the envelope are the same for every item of a call (the token names the call;
with the item's id it names the lease), so they are packed once. This runs once per item, so it also
avoids what costs most in Redis's Lua: numbers passed to redis.call (formatted with %.17g;
string.format('%d') is cheaper), tables, C calls, and msgpack decoding: an envelope is checked by
reading its msgpack headers, not by decoding it. The breakdown: bench/README.md, "Fourth pass".

Check, then write (rediswq/lua/README.md): every read, type check and decode comes first; an entry that
does not decode is quarantined as a dead letter `malformed:<sha1>`, never dropped.

Unseen expiries: a lease that expires never renewed (its deadline is still leased_at_ms + lease_ms)
may never have reached its worker (a lost reply). On the last attempt such an expiry does not
dead-letter the item: it goes back once more, with attempts = max_attempts; the next expiry or failure
dead-letters it. So a lost reply does not kill an item, and an item that kills its worker at once
runs max_attempts + 1 times, not forever.

Out of memory: the first write of a call that takes items is HINCRBY token, which Redis refuses on a
full noeviction Redis while the script has written nothing; then the call only completes (ZREM first:
Redis allows any later write of a script that has written).
]]
local inbox, pending, leased, payloads = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local delayed, dead, ids, meta = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local NOTHING_NOW, DRAINED, MISSING, DAMAGED, OUT_OF_MEMORY = 1, 2, 3, 4, 5
local count = tonumber(ARGV[1])
local max_attempts = tonumber(ARGV[3])
local worker = ARGV[5]
local until_closed = ARGV[6] == '1'
-- Looked up once a call: the per-item paths below call it often (a global lookup each time costs).
local byte = string.byte

-- A read of many members in slices, its replies joined in order (call_sliced, for reads).
local function sliced_read(command, key, values, step)
  if #values <= step then return redis.call(command, key, unpack(values)) end
  local joined = {}
  for i = 1, #values, step do
    local part = redis.call(command, key, unpack(values, i, math.min(i + step - 1, #values)))
    for j = 1, #part do joined[i + j - 1] = part[j] end
  end
  return joined
end

-- The kind ('i' int, 's' str) of the msgpack value at byte `at` of `s`, and the byte after it.
local function field(s, at)
  local b = byte(s, at)
  if not b then return nil end
  if b < 0x80 or b >= 0xe0 then return 'i', at + 1 end
  if b >= 0xa0 and b <= 0xbf then return 's', at + 1 + b - 0xa0 end
  if b >= 0xcc and b <= 0xd3 then return 'i', at + 1 + 2 ^ ((b - 0xcc) % 4) end
  local n
  if b == 0xd9 or b == 0xc4 then n = 1 elseif b == 0xda or b == 0xc5 then n = 2
  elseif b == 0xdb or b == 0xc6 then n = 4 else return nil end
  local len = 0
  for i = at + 1, at + n do
    local c = byte(s, i)
    if not c then return nil end
    len = len * 256 + c
  end
  return 's', at + 1 + n + len
end

-- Why `s` is not a pending envelope [id, attempts, payload], or nil when it is one. Read from its
-- msgpack headers, the first 9 bytes at once. The envelopes put_many makes pass in one test: an id the
-- queue gave (under 2^32: 1, 2, 3 or 5 bytes), attempts under 128, a payload under 32 bytes or a str 8
-- (a byte that was read means the bytes before it are there). The others are walked with `field`.
local function bad_envelope(s)
  local b1, b2, b3, b4, b5, b6, b7, b8, b9 = byte(s, 1, 9)
  if b1 ~= 0x93 or not b2 then return 'not a msgpack array of 3' end
  -- attempts, the payload's header, the byte after it and its position (a str of p - 0xa0 bytes ends
  -- at at - 1 + p - 0xa0; a str 8 of n bytes at at + n)
  local a, p, n, at
  if b2 == 0xce then a, p, n, at = b7, b8, b9, 9
  elseif b2 == 0xcd then a, p, n, at = b5, b6, b7, 7
  elseif b2 == 0xcc then a, p, n, at = b4, b5, b6, 6
  elseif b2 < 0x80 then a, p, n, at = b3, b4, b5, 5 end
  if p and a < 0x80 and (p >= 0xa0 and p <= 0xbf and #s == at + p - 0xa1 or p == 0xd9 and n and #s == at + n) then
    return nil
  end
  local kind
  kind, at = field(s, 2)
  if not kind then return 'bad id' end
  kind, at = field(s, at)
  if kind ~= 'i' then return 'bad attempts' end
  kind, at = field(s, at)
  if kind ~= 's' or at ~= #s + 1 then return 'bad or truncated payload' end
  return nil
end

-- Most handles start with a 3-item envelope (0x93) whose id the queue assigned (a msgpack int):
-- nothing to clean up besides the lease. The rest (a caller's id, a payload kept apart) are decoded.
local function plain(handle)
  local b1, b2 = byte(handle, 1, 2)
  return b1 == 0x93 and b2 ~= nil and (b2 < 0xa0 or (b2 > 0xbf and b2 < 0xd9) or b2 > 0xdb)
end

-- The call's lease token, HINCRBY meta token 1: the first write of a call that leases, so it is its own
-- check: it fails before anything is written on a token that is no integer (raised, naming the key),
-- and on a full noeviction Redis (nil: the call then only completes).
local function next_token()
  local token = redis.pcall('HINCRBY', meta, 'token', '1')
  if type(token) ~= 'table' then return token end
  if not string.find(token.err, 'OOM', 1, true) then error('key ' .. meta .. ' field token: ' .. token.err) end
  return nil
end

local now_ms = clock_ms()
local now_text = int(now_ms)
local reply = {0, -1, 0, 0, 0}

-- Check. --------------------------------------------------------------------------------------------
local m = redis.pcall('HMGET', meta, 'closed', 'token', 'completed')
if m.err then refused(meta, 'hash', m) end
if #ARGV > 6 then counter(meta, 'completed', m[3]) end
if not (m[1] or m[2] or m[3]) and redis.call('EXISTS', meta) == 0 then
  -- No counters: a queue never made, one whose state vanished, or one filled by hand (inbox only).
  if redis.call('EXISTS', pending, leased, payloads, delayed, dead, ids) > 0 then
    reply[1] = DAMAGED
    return reply
  end
  if count == 0 or redis.call('TYPE', inbox).ok ~= 'list' then
    reply[1] = MISSING
    return reply
  end
end

-- One item, at most one completion of a plain handle: a worker's complete_and_lease loop. The same
-- reads, checks and writes as the general path below, in the same order, without the tables built for
-- a batch. Anything else (an expired lease, a due retry, a pending head that is missing, malformed or
-- over EMBED_LIMIT) leaves this path before its first write, and the general path takes over, reusing
-- the replies read so far.
local found, due, head_read
if count == 1 and #ARGV <= 7 and (#ARGV == 6 or plain(ARGV[7])) then
  found = redis.pcall('ZRANGEBYSCORE', leased, '-inf', now_text, 'WITHSCORES', 'LIMIT', '0', ARGV[4])
  if found.err then refused(leased, 'zset', found) end
  if #found == 0 then
    -- Due retries: most calls find none waiting, and ZCARD (a number, no table) says so for less.
    local waiting = redis.pcall('ZCARD', delayed)
    if type(waiting) == 'table' then refused(delayed, 'zset', waiting) end
    due = waiting > 0 and redis.call('ZRANGEBYSCORE', delayed, '-inf', now_text, 'LIMIT', '0', ARGV[4]) or {}
    if #due == 0 then
      head_read = redis.pcall('LRANGE', pending, '0', '0')
      if head_read.err then refused(pending, 'list', head_read) end
      local head = head_read[1]
      if head and #head <= EMBED_LIMIT and not bad_envelope(head) then
        local handle = ARGV[7]
        local token = next_token()
        if not token then reply[1] = OUT_OF_MEMORY end
        local lost = false
        if handle then
          if redis.call('ZREM', leased, handle) == 1 then
            redis.call('HINCRBY', meta, 'completed', '1')
          else
            lost, reply[4], reply[6] = true, 1, 1
          end
        end
        if reply[1] == OUT_OF_MEMORY then return reply end
        redis.call('LTRIM', pending, '1', '-1')
        local lease_ms = tonumber(ARGV[2])
        local deadline_text = int(now_ms + lease_ms)
        handle = head .. cmsgpack.pack(token, worker, now_ms, lease_ms)
        redis.call('ZADD', leased, deadline_text, handle)
        if lost then return {0, -1, deadline_text, 1, 0, 1, handle} end
        return {0, -1, deadline_text, 0, 0, handle}
      end
    end
  end
end

-- Tables are made only when a call needs them (this runs once per item): EMPTY stands in until then.
local EMPTY = {}
local quarantined = EMPTY  -- field, record pairs for HSET dead
local function malformed(key, entry, why)
  if quarantined == EMPTY then quarantined = {} end
  quarantine(quarantined, key, entry, why, now_ms)
end

-- Completions: decode the handles that need cleaning up (a handle that does not decode is not a lease).
local completing, handles, kept, forget, need_ids, need_payloads = {}, {}, EMPTY, EMPTY, false, false
local n_completing = 0
-- A handle needs cleaning up when its item's id is the caller's (in `ids` while live) or its payload
-- waits in `payloads`. While both keys are empty no held handle does, and a handle not held is left
-- alone (lost): so a batch then takes its handles as they are, without reading each one's header.
if #ARGV > 7 and checked('set', 'SCARD', ids) == 0 and checked('hash', 'HLEN', payloads) == 0 then
  for i = 7, #ARGV do
    n_completing = n_completing + 1
    completing[n_completing], handles[n_completing] = i, ARGV[i]
  end
else
  for i = 7, #ARGV do
    local handle = ARGV[i]
    if plain(handle) then
      n_completing = n_completing + 1
      completing[n_completing], handles[n_completing] = i, handle
    else
      local e = read_handle(handle)
      if not e then
        reply[4] = reply[4] + 1
        reply[#reply + 1] = i - 6
      else
        n_completing = n_completing + 1
        completing[n_completing], handles[n_completing] = i, handle
        local key = id_key(e[1])
        if e[3] == nil then
          if kept == EMPTY then kept = {} end
          kept[i], need_payloads = key, true
        end
        if type(e[1]) == 'string' then
          if forget == EMPTY then forget = {} end
          forget[i], need_ids = key, true
        end
      end
    end
  end
end
if count == 0 and #completing > 0 then checked('zset', 'ZCARD', leased) end

local expired, back, dead_letters, fetched = EMPTY, EMPTY, EMPTY, EMPTY
local front, prefix, raw, taken = EMPTY, EMPTY, EMPTY, {}
local n_trim = 0  -- entries read off pending's head, to trim (`prefix` may become `taken` and grow)
local large = false  -- an envelope taken is over EMBED_LIMIT: its payload goes to `payloads`
if count > 0 then
  -- Expired leases, oldest deadline first; a handle being completed now is not reclaimed.
  found = found or checked('zset', 'ZRANGEBYSCORE', leased, '-inf', now_text, 'WITHSCORES', 'LIMIT', '0', ARGV[4])
  if #found > 0 then
    local skip = {}
    for i = 7, #ARGV do skip[ARGV[i]] = true end
    local decoded, fetch = {}, {}
    expired, back, dead_letters, fetched = {}, {}, {}, {}
    for i = 1, #found, 2 do
      local handle = found[i]
      if not skip[handle] and handle ~= SENTINEL then
        expired[#expired + 1] = handle
        local e, why, leased_at, lease_ms = read_handle(handle)
        if why then
          malformed(leased, handle, why)
        else
          local unseen = type(leased_at) == 'number' and type(lease_ms) == 'number'
            and tonumber(found[i + 1]) == leased_at + lease_ms
          decoded[#decoded + 1] = {e, unseen, handle}
          if e[3] == nil then fetch[#fetch + 1] = id_key(e[1]) end
        end
      end
    end
    local stored = {}
    if #fetch > 0 then
      local values = checked('hash', 'HMGET', payloads, unpack(fetch))
      for i, key in ipairs(fetch) do fetched[#fetched + 1] = key; stored[key] = values[i] end
    end
    for _, d in ipairs(decoded) do
      local e, unseen, handle = d[1], d[2], d[3]
      local id, attempt, payload = e[1], e[2] + 1, e[3]
      if payload == nil then payload = stored[id_key(id)] end
      if not payload then
        malformed(leased, handle, 'its payload is missing from ' .. payloads)
      elseif attempt > max_attempts or (attempt == max_attempts and not unseen) then
        dead_letters[#dead_letters + 1] = {id, attempt, payload}
      else
        back[#back + 1] = cmsgpack.pack({id, attempt, payload})
      end
    end
  end
  -- Due retries go to the head of the queue: they have waited their backoff already.
  due = due or checked('zset', 'ZRANGEBYSCORE', delayed, '-inf', now_text, 'LIMIT', '0', ARGV[4])
  -- The head of pending as it will be: due retries, then reclaimed leases (as LPUSH would leave them).
  if #due > 0 or #back > 0 then
    front = {}
    for i = #due, 1, -1 do
      local why = bad_envelope(due[i])
      if why then malformed(delayed, due[i], why) else front[#front + 1] = due[i] end
    end
    for i = #back, 1, -1 do front[#front + 1] = back[i] end
    for i = 1, math.min(count, #front) do
      taken[#taken + 1] = front[i]
      if #front[i] > EMBED_LIMIT then large = true end
    end
  end
  local need = count - #taken
  if need > 0 then
    prefix = need == 1 and head_read or checked('list', 'LRANGE', pending, '0', int(need - 1))
    n_trim = #prefix
    -- The common case, nothing taken before and no entry bad, takes `prefix` itself, not a copy.
    local n_prefix, last, whole = #prefix, #taken, #taken == 0
    for j = 1, n_prefix do
      local envelope = prefix[j]
      local why = bad_envelope(envelope)
      if why then
        if whole then
          whole = false
          for k = 1, j - 1 do taken[k] = prefix[k] end
          last = j - 1
        end
        malformed(pending, envelope, why)
      else
        if not whole then last = last + 1; taken[last] = envelope end
        if #envelope > EMBED_LIMIT then large = true end
      end
    end
    if whole then taken = prefix end
    if n_prefix < need and redis.call('TYPE', inbox).ok == 'list' then
      raw = redis.call('LRANGE', inbox, '0', int(count - #taken - 1))
    end
  else
    checked('list', 'LLEN', pending)
  end
end
if #expired > 0 or #quarantined > 0 or #raw > 0 then
  -- The counters the rarer paths increment.
  local more = redis.call('HMGET', meta, 'expired', 'dead_lettered', 'quarantined', 'seq', 'enqueued')
  for i, name in ipairs({'expired', 'dead_lettered', 'quarantined', 'seq', 'enqueued'}) do counter(meta, name, more[i]) end
end
if #dead_letters > 0 or #quarantined > 0 then checked('hash', 'HLEN', dead) end
for _, d in ipairs(dead_letters) do if type(d[1]) == 'string' then need_ids = true end end
if need_ids then checked('set', 'SCARD', ids) end
local n_taken = #taken + #raw
if need_payloads or large or #raw > 0 then checked('hash', 'HLEN', payloads) end

-- Which of a batch's handles are still leased: nil when all are, else true or false each. The handles
-- of one lease call share its deadline until renewed, leased_at_ms + lease_ms, which the first handle
-- names: one ZRANGEBYSCORE of that score finds them by their bytes, in byte order, which is the order
-- of a batch whose ids ascend, so the reply and the batch are walked side by side, a comparison of
-- interned strings each. The first that differs builds a set of the reply; handles not in it
-- (renewed, leased by another call, or lost) are asked with ZMSCORE, whose reply costs a formatted
-- double per member: several times more.
local function still_leased(batch)
  local members = EMPTY
  local _, _, leased_at, lease_ms = read_handle(batch[1])
  if type(leased_at) == 'number' and type(lease_ms) == 'number' then
    local score = int(leased_at + lease_ms)  -- digits, whatever the handle holds: a score Redis takes
    members = redis.call('ZRANGEBYSCORE', leased, score, score, 'LIMIT', '0', int(2 * #batch))
  end
  local n, k = #batch, 1
  while k <= n and members[k] == batch[k] do k = k + 1 end
  if k > n then return nil end
  local set, held, others, at = {}, {}, EMPTY, EMPTY
  for _, member in ipairs(members) do set[member] = true end
  for j = 1, k - 1 do held[j] = true end
  for j = k, n do
    local handle = batch[j]
    if set[handle] then
      held[j] = true
    else
      if others == EMPTY then others, at = {}, {} end
      others[#others + 1], at[#at + 1], held[j] = handle, j, false
    end
  end
  if #others > 0 then
    local scores = sliced_read('ZMSCORE', leased, others, 1000)
    for m, j in ipairs(at) do held[j] = scores[m] and true or false end
  end
  return held
end

-- The leases a batch completes: read before any write (leased's type was checked above), so a
-- replica and the AOF get one ZREM for the batch below, not one per item. A handle given twice is
-- found by that ZREM removing fewer members than it was sent (below), so the common batch builds no set.
local held, gone = completing, handles
local scores = #completing > 1 and still_leased(handles)
if scores then
  for j = 1, #handles do
    if not scores[j] then
      if held == completing then  -- the first lost one: from here on, copies without the lost
        held, gone = {}, {}
        for k = 1, j - 1 do held[k], gone[k] = completing[k], handles[k] end
      end
      reply[4] = reply[4] + 1
      reply[#reply + 1] = completing[j] - 6
    elseif held ~= completing then
      held[#held + 1], gone[#gone + 1] = completing[j], handles[j]
    end
  end
end

-- Write. --------------------------------------------------------------------------------------------
local token
if n_taken > 0 then
  token = next_token()
  if not token then
    n_taken, taken, raw = 0, {}, {}
    expired, dead_letters, quarantined, due, front, prefix, fetched, back = {}, {}, {}, {}, {}, {}, {}, {}
    n_trim = 0
    reply[1] = OUT_OF_MEMORY
  end
end

-- Complete. A handle still in `leased` is the ownership check: it names this lease and no later one.
-- A batch was looked up above (still_leased) and goes with one ZREM; one handle is checked by its own.
local done, kept_keys, forgotten = 0, EMPTY, EMPTY
local removed = 0
for i = 1, #gone, 1000 do
  removed = removed + redis.call('ZREM', leased, unpack(gone, i, math.min(i + 999, #gone)))
end
if removed < #held then
  -- The one handle's lease no longer held, or a batch gave a handle twice: it completes once.
  local seen, first = {}, {}
  for j, i in ipairs(held) do
    if removed == 0 or seen[gone[j]] then
      reply[4] = reply[4] + 1
      reply[#reply + 1] = i - 6
    else
      seen[gone[j]] = true
      first[#first + 1] = i
    end
  end
  held = first
end
if reply[4] > 1 then
  -- Lost positions come from the header read, the lookup and the ZREM above: in order, as documented.
  local lost = {}
  for j = 1, reply[4] do lost[j] = reply[5 + j] end
  table.sort(lost)
  for j, position in ipairs(lost) do reply[5 + j] = position end
end
if kept == EMPTY and forget == EMPTY then
  done = #held  -- no handle needs cleaning up (the common batch): counted, no loop
else
  for _, i in ipairs(held) do
    done = done + 1
    if kept[i] then
      if kept_keys == EMPTY then kept_keys = {} end
      kept_keys[#kept_keys + 1] = kept[i]
    end
    if forget[i] then
      if forgotten == EMPTY then forgotten = {} end
      forgotten[#forgotten + 1] = forget[i]
    end
  end
end
if #kept_keys > 0 then call_sliced('HDEL', payloads, kept_keys, 1000) end
if #forgotten > 0 then call_sliced('SREM', ids, forgotten, 1000) end
if done > 0 then redis.call('HINCRBY', meta, 'completed', int(done)) end
if count == 0 or reply[1] == OUT_OF_MEMORY then
  return reply
end

-- Reclaim, dead-letter, quarantine.
if #expired > 0 then
  call_sliced('ZREM', leased, expired, 1000)
  if #fetched > 0 then call_sliced('HDEL', payloads, fetched, 1000) end
  redis.call('HINCRBY', meta, 'expired', #expired)
end
if #dead_letters > 0 then
  local records, freed = {}, {}
  for _, d in ipairs(dead_letters) do
    local key = id_key(d[1])
    records[#records + 1] = key
    records[#records + 1] = cmsgpack.pack({d[1], d[2], d[3], 'lease expired', now_ms})
    if type(d[1]) == 'string' then freed[#freed + 1] = key end
  end
  call_sliced('HSET', dead, records, 2000)
  if #freed > 0 then call_sliced('SREM', ids, freed, 1000) end
  redis.call('HINCRBY', meta, 'dead_lettered', #dead_letters)
end
if #quarantined > 0 then
  call_sliced('HSET', dead, quarantined, 2000)
  redis.call('HINCRBY', meta, 'quarantined', #quarantined / 2)
end
if #due > 0 then call_sliced('ZREM', delayed, due, 1000) end
if n_trim > 0 then redis.call('LTRIM', pending, int(n_trim), '-1') end
if #front > count then
  local rest = {}
  for i = #front, count + 1, -1 do rest[#rest + 1] = front[i] end
  call_sliced('LPUSH', pending, rest, 1000)
end
if #raw > 0 then
  -- Raw items from the inbox get an id and an envelope now.
  redis.call('LTRIM', inbox, int(#raw), '-1')
  local first = redis.call('HINCRBY', meta, 'seq', #raw) - #raw + 1
  redis.call('HINCRBY', meta, 'enqueued', #raw)
  for i, payload in ipairs(raw) do taken[#taken + 1] = cmsgpack.pack({first + i - 1, 0, payload}) end
end

if #taken == 0 then
  if #quarantined > 0 then
    reply[1], reply[2] = NOTHING_NOW, 0
    return reply
  end
  local busy = redis.call('ZCARD', leased) - (redis.call('ZSCORE', leased, SENTINEL) and 1 or 0)
    + redis.call('ZCARD', delayed)
  if busy == 0 and (m[1] or not until_closed) then
    reply[1] = DRAINED
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
  reply[1], reply[2] = NOTHING_NOW, wait_ms
  return reply
end

local deadline_text = int(now_ms + tonumber(ARGV[2]))
reply[3] = deadline_text
-- A handle is its envelope and a tail the same for the whole call, packed once: the call's token
-- names the lease together with the item's id, which no other item taken in the call has.
local tail = cmsgpack.pack(token, worker, now_ms, tonumber(ARGV[2]))
local scored, kept_apart, payload_at, n_reply = {}, EMPTY, EMPTY, #reply
for i, envelope in ipairs(taken) do
  if #envelope > EMBED_LIMIT then
    -- A large payload waits in `payloads`, so a handle stays small enough to send back.
    local e = cmsgpack.unpack(envelope)
    if kept_apart == EMPTY then kept_apart, payload_at = {}, {} end
    kept_apart[#kept_apart + 1] = id_key(e[1])
    kept_apart[#kept_apart + 1] = e[3]
    payload_at[i] = e[3]
    envelope = cmsgpack.pack({e[1], e[2]})
  end
  local handle = envelope .. tail
  scored[2 * i - 1], scored[2 * i] = deadline_text, handle
  reply[n_reply + i] = handle
end
if #taken > 1 then redis.call('ZADD', leased, 'NX', 'inf', SENTINEL) end
local added = 0
for i = 1, #scored, 2000 do
  added = added + redis.call('ZADD', leased, unpack(scored, i, math.min(i + 1999, #scored)))
end
if #kept_apart > 0 then call_sliced('HSET', payloads, kept_apart, 2000) end
if added < #taken then
  -- Two copies of one envelope (an item is in one place at a time: a copy was planted) made one
  -- handle, one lease. The later copies go back to the head of pending as they were, for a later call.
  local seen, again, n = {}, {}, n_reply
  local unique_kept = EMPTY
  for i = 1, #taken do
    local handle = scored[2 * i]
    if seen[handle] then
      again[#again + 1] = taken[i]
    else
      seen[handle] = true
      n = n + 1
      reply[n] = handle
      if payload_at[i] then
        if unique_kept == EMPTY then unique_kept = {} end
        unique_kept[n - n_reply] = payload_at[i]
      end
    end
  end
  for j = #reply, n + 1, -1 do reply[j] = nil end
  payload_at = unique_kept
  local rest = {}
  for i = #again, 1, -1 do rest[#rest + 1] = again[i] end
  call_sliced('LPUSH', pending, rest, 1000)
end
if payload_at ~= EMPTY then
  -- A pair for each payload kept apart: the position of its handle, the payload.
  n_reply = #reply
  for i, payload in pairs(payload_at) do
    reply[n_reply + 1], reply[n_reply + 2] = i, payload
    n_reply = n_reply + 2
    reply[5] = reply[5] + 1
  end
end
return reply
