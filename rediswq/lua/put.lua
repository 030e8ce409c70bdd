--[[ put: append items to the pending list, atomically with the check that the queue is open.

KEYS (the same eight for every script; see rediswq/_keys.py for the schema)
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
ARGV
  ARGV[2i-1], ARGV[2i]  the i-th item: its caller-given id ("" asks the queue for one), its payload (bytes)
Returns {status, first_id, skipped}
  status    0 added; 1 the queue is closed and nothing was added
  first_id  the id given to the first item that asked for one (the next ones follow by one); 0 if none did
  skipped   how many items had a caller-given id that is live already (nothing added for them)
]]
local pending, dead, ids, meta = KEYS[2], KEYS[6], KEYS[7], KEYS[8]

if redis.call('HGET', meta, 'closed') then
  return {1, 0, 0}
end

local wanted = 0
for i = 1, #ARGV, 2 do
  if ARGV[i] == '' then wanted = wanted + 1 end
end
local next_id = 0
if wanted > 0 then
  next_id = redis.call('HINCRBY', meta, 'seq', wanted) - wanted + 1
end
local first_id = next_id

-- RPUSH in slices: Lua's unpack() has a stack limit of about 8000 values.
local slice, added, skipped, superseded = {}, 0, 0, 0
local any_dead = redis.call('EXISTS', dead) == 1
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if id == '' then
    id = next_id
    next_id = next_id + 1
  elseif redis.call('SADD', ids, id) == 0 then
    skipped = skipped + 1
    id = nil
  elseif any_dead then
    -- A new item with the id of a dead letter replaces it: the dead one is dropped, not requeued.
    superseded = superseded + redis.call('HDEL', dead, id)
  end
  if id then
    slice[#slice + 1] = cmsgpack.pack({id, 0, ARGV[i + 1]})
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
if added > 0 then redis.call('HINCRBY', meta, 'enqueued', added) end
if superseded > 0 then redis.call('HINCRBY', meta, 'dropped', superseded) end
return {0, first_id, skipped}
