--[[ purge_dead: delete dead letters, counting them as dropped (so completed + dead + dropped = enqueued).

KEYS
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
ARGV
  ARGV[1] ...   ids of the dead letters to delete (at most a few thousand: the caller batches them)
Returns the number deleted

Check, then write (rediswq/lua/README.md). Records that do not decode are deleted like the others.
]]
local dead, meta = KEYS[6], KEYS[8]

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

if #ARGV == 0 then return 0 end
checked('hash', 'HLEN', dead)
counters('dropped')
local deleted = redis.call('HDEL', dead, unpack(ARGV))
if deleted > 0 then redis.call('HINCRBY', meta, 'dropped', deleted) end
return deleted
