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

-- Check. --------------------------------------------------------------------------------------------
checked('zset', 'ZCARD', leased)
checked('list', 'LLEN', pending)
counters(meta, 'released', 'quarantined')
local now_ms = clock_ms()
local lost, held, back, kept, quarantined = {}, {}, {}, {}, {}
for i = 1, #ARGV do
  local handle = ARGV[i]
  if redis.call('ZSCORE', leased, handle) then
    held[#held + 1] = handle
    -- The handle starts with the envelope the item was leased from (see rediswq/_wire.py).
    local e, why = read_handle(handle)
    local payload = e and e[3]
    if e and payload == nil then
      local key = id_key(e[1])
      payload = checked('hash', 'HGET', payloads, key)
      kept[#kept + 1] = key
      if not payload then why = 'its payload is missing from ' .. payloads end
    end
    if why then
      quarantine(quarantined, leased, handle, why, now_ms)
    else
      back[#back + 1] = cmsgpack.pack({e[1], e[2], payload})
    end
  else
    lost[#lost + 1] = i
  end
end
if #quarantined > 0 then checked('hash', 'HLEN', dead) end

-- Write. --------------------------------------------------------------------------------------------
for _, handle in ipairs(held) do redis.call('ZREM', leased, handle) end
for _, envelope in ipairs(back) do redis.call('LPUSH', pending, envelope) end
if #kept > 0 then redis.call('HDEL', payloads, unpack(kept)) end
if #quarantined > 0 then
  redis.call('HSET', dead, unpack(quarantined))
  redis.call('HINCRBY', meta, 'quarantined', #quarantined / 2)
end
if #back > 0 then redis.call('HINCRBY', meta, 'released', #back) end
return lost
