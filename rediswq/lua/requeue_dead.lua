--[[ requeue_dead: move dead letters back to the tail of the queue with their attempts reset to 0.

KEYS
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
ARGV
  ARGV[1] ...   ids of the dead letters to requeue (ids that are not dead letters are ignored)
Returns the number of items requeued

Check, then write (rediswq/lua/README.md). Quarantined entries (ids malformed:<sha1>) and records that
do not decode stay where they are: their bytes are no item to run (purge_dead deletes them).
]]
local pending, dead, ids, meta = KEYS[2], KEYS[6], KEYS[7], KEYS[8]

-- Check. --------------------------------------------------------------------------------------------
if #ARGV == 0 then return 0 end
local records = checked('hash', 'HMGET', dead, unpack(ARGV))
checked('list', 'LLEN', pending)
counters(meta, 'dropped')
local found, any_string = {}, false
for i, record in ipairs(records) do
  if record and string.sub(ARGV[i], 1, 10) ~= 'malformed:' then
    local ok, d = pcall(cmsgpack.unpack, record)
    if ok and type(d) == 'table' and (type(d[1]) == 'number' or type(d[1]) == 'string')
        and type(d[3]) == 'string' then
      found[#found + 1] = {ARGV[i], d[1], d[3]}
      if type(d[1]) == 'string' then any_string = true end
    end
  end
end
if any_string then checked('set', 'SCARD', ids) end

-- Write. --------------------------------------------------------------------------------------------
local requeued, dropped = 0, 0
for _, f in ipairs(found) do
  local field, id, payload = f[1], f[2], f[3]
  redis.call('HDEL', dead, field)
  -- A caller-given id that is live again (put anew) keeps its live item; the dead one is dropped.
  if type(id) == 'string' and redis.call('SADD', ids, id) == 0 then
    dropped = dropped + 1
  else
    redis.call('RPUSH', pending, cmsgpack.pack({id, 0, payload}))
    requeued = requeued + 1
  end
end
if dropped > 0 then redis.call('HINCRBY', meta, 'dropped', dropped) end
return requeued
