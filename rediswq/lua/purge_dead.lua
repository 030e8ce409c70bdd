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

if #ARGV == 0 then return 0 end
checked('hash', 'HLEN', dead)
counters(meta, 'dropped')
local deleted = redis.call('HDEL', dead, unpack(ARGV))
if deleted > 0 then redis.call('HINCRBY', meta, 'dropped', deleted) end
return deleted
