--[[ requeue_dead: move dead letters back to the tail of the queue with their attempts reset to 0.

KEYS
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
ARGV
  ARGV[1] ...   ids of the dead letters to requeue (ids that are not dead letters are ignored)
Returns the number of items requeued
]]
local pending, dead, ids, meta = KEYS[2], KEYS[6], KEYS[7], KEYS[8]

local requeued, dropped = 0, 0
for i = 1, #ARGV do
  local record = redis.call('HGET', dead, ARGV[i])
  if record then
    redis.call('HDEL', dead, ARGV[i])
    local d = cmsgpack.unpack(record)
    local id = d[1]
    -- A caller-given id that is live again (put anew) keeps its live item; the dead one is dropped.
    if type(id) == 'string' and redis.call('SADD', ids, id) == 0 then
      dropped = dropped + 1
    else
      redis.call('RPUSH', pending, cmsgpack.pack({id, 0, d[3]}))
      requeued = requeued + 1
    end
  end
end
if dropped > 0 then redis.call('HINCRBY', meta, 'dropped', dropped) end
return requeued
