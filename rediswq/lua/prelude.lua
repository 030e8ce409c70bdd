--[[ prelude: the helpers every operation shares (rediswq/lua/README.md, The prelude).

Not an operation: rediswq/_library.py joins this file before each operation's file, as the head of
each script on Redis 6.2 and once at the top of the function library on Redis 7 (its functions are
local functions of one chunk). So it only defines: no KEYS, no ARGV, no call to Redis at load time.
The byte format it reads and writes is rediswq/_wire.py's; the keys are rediswq/_keys.py's.
]]
-- Kept in step with rediswq/_keys.py (LEASED_SENTINEL, EMBED_LIMIT).
local SENTINEL = 'rediswq:sentinel: keeps this key out of the small listpack encoding; never a lease'
local EMBED_LIMIT = 256

-- A number as Redis takes it: redis.call formats a Lua number with %.17g, which costs more.
local function int(n) return string.format('%d', n) end

-- Redis's clock, the one every worker shares, in milliseconds.
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Raise the error reply `r` of a command on `key`, naming the key when it holds another type than `kind`.
local function refused(key, kind, r)
  local held = redis.call('TYPE', key).ok
  if held ~= kind then error('key ' .. key .. ' holds a ' .. held .. ', not a ' .. kind) end
  error(r.err)
end

-- A read that also checks its key's type; the error names the key. (A hot path that reads a table
-- calls redis.pcall and `refused` itself: a vararg call costs.)
local function checked(kind, command, key, ...)
  local r = redis.pcall(command, key, ...)
  if type(r) == 'table' and r.err then refused(key, kind, r) end
  return r
end

-- A meta counter a call increments must hold an integer as HINCRBY reads one: no sign but a minus, no
-- leading zero, no '-0', and at most 18 characters so that an increment cannot overflow it.
local function counter(meta, field, value)
  if value and value ~= '0' and (#value > 18 or not string.find(value, '^%-?[1-9]%d*$')) then
    error('key ' .. meta .. ' field ' .. field .. ' holds '
      .. string.format('%q', string.sub(value, 1, 40)) .. ', not an integer')
  end
end

-- Read the meta counters named and check each (counter); their values.
local function counters(meta, ...)
  local values = checked('hash', 'HMGET', meta, ...)
  for i, name in ipairs({...}) do counter(meta, name, values[i]) end
  return values
end

-- Lua's unpack() stops at about 8000 values, so variadic commands go in slices (`step` even for pairs).
local function call_sliced(command, key, values, step)
  for i = 1, #values, step do
    redis.call(command, key, unpack(values, i, math.min(i + step - 1, #values)))
  end
end

-- The field of an item in the payloads hash, the ids set and the dead letters: its id as text.
local function id_key(id)
  if type(id) == 'number' then return int(id) end
  return id
end

-- A handle's envelope {id, attempts[, payload]}, nil, and the lease's leased_at_ms and lease_ms
-- (rediswq/_wire.py); or nil and why it is no handle.
local function read_handle(handle)
  local ok, e, _, _, leased_at, lease_ms = pcall(cmsgpack.unpack, handle)
  if not ok then return nil, 'not msgpack' end
  if type(e) ~= 'table' or (type(e[1]) ~= 'number' and type(e[1]) ~= 'string') or type(e[2]) ~= 'number'
      or not (#e == 2 or (#e == 3 and type(e[3]) == 'string')) then
    return nil, 'not a lease handle'
  end
  return e, nil, leased_at, lease_ms
end

-- Add a malformed entry of `key` to `records` (field, record pairs for HSET dead): quarantined as
-- malformed:<sha1 of its bytes>, its bytes as the payload, never dropped.
local function quarantine(records, key, entry, why, now_ms)
  local id = 'malformed:' .. redis.sha1hex(entry)
  records[#records + 1] = id
  records[#records + 1] = cmsgpack.pack({id, 0, entry, 'malformed entry in ' .. key .. ': ' .. why, now_ms})
end
