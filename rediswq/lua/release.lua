--[[ release: give leases back to the head of the queue without charging an attempt (worker shutdown).

KEYS
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
ARGV
  ARGV[1] ...   handles of the leases to give back
Returns lost: 1-based positions of the handles whose lease no longer held (nothing done for them)

Check, then write (rediswq/lua/README.md); the first write is a ZREM, so releasing works on a full
(noeviction) Redis. A held handle that does not decode, or whose kept-apart payload is gone, is
quarantined.
]]
local pending, leased, payloads, dead, meta = KEYS[2], KEYS[3], KEYS[4], KEYS[6], KEYS[8]

-- A read that also checks its key's type; the error names the key (same in every script).
local function checked(kind, command, key, ...)
  local r = redis.pcall(command, key, ...)
  if type(r) == 'table' and r.err then
    local held = redis.call('TYPE', key).ok
    if held ~= kind then error('key ' .. key .. ' holds a ' .. held .. ', not a ' .. kind) end
    error(r.err)
  end
  return r
end

-- Meta counters' values as numbers; anything but an integer is an error naming the key.
local function counters(...)
  local values = checked('hash', 'HMGET', meta, ...)
  for i, name in ipairs({...}) do
    if values[i] and (#values[i] > 18 or not string.find(values[i], '^%-?%d+$')) then
      error('key ' .. meta .. ' field ' .. name .. ' holds '
        .. string.format('%q', string.sub(values[i], 1, 40)) .. ', not an integer')
    end
  end
end

-- Check. --------------------------------------------------------------------------------------------
checked('zset', 'ZCARD', leased)
checked('list', 'LLEN', pending)
counters('released', 'quarantined')
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lost, held, back, kept, quarantine = {}, {}, {}, {}, {}
for i = 1, #ARGV do
  local handle = ARGV[i]
  if redis.call('ZSCORE', leased, handle) then
    held[#held + 1] = handle
    -- The handle starts with the envelope the item was leased from (see rediswq/_keys.py).
    local ok, e = pcall(cmsgpack.unpack, handle)
    local why, payload
    if not ok or type(e) ~= 'table' or (type(e[1]) ~= 'number' and type(e[1]) ~= 'string')
        or type(e[2]) ~= 'number' then
      why = 'not a lease handle'
    else
      payload = e[3]
      if payload == nil then
        local key = e[1]
        if type(key) == 'number' then key = string.format('%d', key) end
        payload = checked('hash', 'HGET', payloads, key)
        kept[#kept + 1] = key
        if not payload then why = 'its payload is missing from ' .. payloads end
      end
    end
    if why then
      local id = 'malformed:' .. redis.sha1hex(handle)
      quarantine[#quarantine + 1] = id
      quarantine[#quarantine + 1] = cmsgpack.pack({id, 0, handle, 'malformed entry in ' .. leased .. ': ' .. why, now_ms})
    else
      back[#back + 1] = cmsgpack.pack({e[1], e[2], payload})
    end
  else
    lost[#lost + 1] = i
  end
end
if #quarantine > 0 then checked('hash', 'HLEN', dead) end

-- Write. --------------------------------------------------------------------------------------------
for _, handle in ipairs(held) do redis.call('ZREM', leased, handle) end
for _, envelope in ipairs(back) do redis.call('LPUSH', pending, envelope) end
if #kept > 0 then redis.call('HDEL', payloads, unpack(kept)) end
if #quarantine > 0 then
  redis.call('HSET', dead, unpack(quarantine))
  redis.call('HINCRBY', meta, 'quarantined', #quarantine / 2)
end
if #back > 0 then redis.call('HINCRBY', meta, 'released', #back) end
return lost
