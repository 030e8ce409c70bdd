--[[ put: append items to the pending list, atomically with the check that the queue is open.

The client sends the envelopes ready-made, as one msgpack array: Redis then decodes the batch in C and
pushes it without building an envelope per item in Lua (the slowest part of an enqueue before). Ids the
queue assigns are reserved by the client beforehand (HINCRBY meta seq n); a batch refused because the
queue closed leaves a gap in the sequence, which nothing relies on.

KEYS (the eight every script takes, and the checkpoints; see rediswq/_keys.py for the schema)
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
  KEYS[9] checkpoints (hash)
ARGV
  ARGV[1]  msgpack array of the envelopes, each the bytes of cmsgpack.pack({id, 0, payload})
  ARGV[2]  msgpack array of their caller-given ids, aligned with the envelopes; "" when the queue
           assigned every id
  ARGV[3]  a checkpoint name, or "" for none
  ARGV[4]  its value, written in the same call as the items, so a producer killed at any point
           finds in it exactly how far its input got in
Returns {status, skipped}
  status    0 added; 1 the queue is closed and nothing was added
  skipped   how many items had a caller-given id that is live already (nothing added for them)
]]
local pending, dead, ids, meta = KEYS[2], KEYS[6], KEYS[7], KEYS[8]
local checkpoint = ARGV[3]

-- Check (rediswq/lua/README.md: every read, type check and decode before the first write).
if checked('hash', 'HGET', meta, 'closed') then
  return {1, 0}
end
counters(meta, 'enqueued', 'dropped')
checked('list', 'LLEN', pending)
local any_dead = checked('hash', 'HLEN', dead) > 0
if ARGV[2] ~= '' then checked('set', 'SCARD', ids) end
if checkpoint ~= '' then
  local kind = redis.call('TYPE', KEYS[9]).ok
  if kind ~= 'none' and kind ~= 'hash' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[9] .. ' is a ' .. kind .. ', not a hash: nothing added')
  end
end
local envelopes = cmsgpack.unpack(ARGV[1])
local given = ARGV[2] ~= '' and cmsgpack.unpack(ARGV[2])

-- Write.
local added, skipped, superseded = 0, 0, 0

if ARGV[2] == '' then
  -- RPUSH in slices: Lua's unpack() has a stack limit of about 8000 values.
  for i = 1, #envelopes, 1000 do
    redis.call('RPUSH', pending, unpack(envelopes, i, math.min(i + 999, #envelopes)))
  end
  added = #envelopes
else
  local slice = {}
  for i = 1, #envelopes do
    local id = given[i]
    if redis.call('SADD', ids, id) == 0 then
      skipped = skipped + 1
    else
      -- A new item with the id of a dead letter replaces it: the dead one is dropped, not requeued.
      if any_dead then superseded = superseded + redis.call('HDEL', dead, id) end
      slice[#slice + 1] = envelopes[i]
      if #slice == 1000 then
        redis.call('RPUSH', pending, unpack(slice))
        added = added + #slice
        slice = {}
      end
    end
  end
  if #slice > 0 then
    redis.call('RPUSH', pending, unpack(slice))
    added = added + #slice
  end
end
if added > 0 then redis.call('HINCRBY', meta, 'enqueued', added) end
if superseded > 0 then redis.call('HINCRBY', meta, 'dropped', superseded) end
if checkpoint ~= '' then redis.call('HSET', KEYS[9], checkpoint, ARGV[4]) end
return {0, skipped}
