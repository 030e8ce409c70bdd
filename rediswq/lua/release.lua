--[[ release: give leases back to the head of the queue without charging an attempt (worker shutdown).

KEYS
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
ARGV
  ARGV[1] ...   handles of the leases to give back
Returns lost: 1-based positions of the handles whose lease no longer held (nothing done for them)
]]
local pending, leased, payloads, meta = KEYS[2], KEYS[3], KEYS[4], KEYS[8]

local lost, released = {}, 0
for i = 1, #ARGV do
  if redis.call('ZREM', leased, ARGV[i]) == 1 then
    -- The handle starts with the envelope the item was leased from (see rediswq/_keys.py).
    local e = cmsgpack.unpack(ARGV[i])
    local id, attempts, payload = e[1], e[2], e[3]
    if payload == nil then
      local key = id
      if type(id) == 'number' then key = string.format('%d', id) end
      payload = redis.call('HGET', payloads, key)
      redis.call('HDEL', payloads, key)
    end
    redis.call('LPUSH', pending, cmsgpack.pack({id, attempts, payload}))
    released = released + 1
  else
    lost[#lost + 1] = i
  end
end
if released > 0 then redis.call('HINCRBY', meta, 'released', released) end
return lost
