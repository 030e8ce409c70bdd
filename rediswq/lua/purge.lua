--[[ purge: delete every key of the queue, and the inbox only if it is a list (it may be someone else's).

KEYS
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
  KEYS[9] checkpoints (hash)
Returns the number of keys deleted
]]
local deleted = redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9])
if redis.call('TYPE', KEYS[1]).ok == 'list' then
  deleted = deleted + redis.call('DEL', KEYS[1])
end
return deleted
