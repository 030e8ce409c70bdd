--[[ reopen: undo close (the queue takes items again), and forget the enqueue checkpoints.

An admin's operation: the worker and producer roles may call neither its function (Redis 7) nor its
commands (DEL, HDEL of meta). The DEL comes first: a caller refused it writes nothing, since Redis
keeps the writes a script made before an error.

KEYS
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
  KEYS[9] checkpoints (hash)
Returns 1 if the queue was closed, else 0
]]
local kind = redis.call('TYPE', KEYS[8]).ok
if kind ~= 'hash' and kind ~= 'none' then
  return redis.error_reply('key ' .. KEYS[8] .. ' holds a ' .. kind .. ', not a hash')
end
redis.call('DEL', KEYS[9])
return redis.call('HDEL', KEYS[8], 'closed')
