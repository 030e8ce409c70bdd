--[[ put: append items to the pending list, atomically with the check that the queue is open.

The items come as one msgpack array rather than an argument each: Redis then decodes the batch in C
instead of the client encoding thousands of arguments, which halves the cost of an enqueued item.

KEYS (the same eight for every script; see rediswq/_keys.py for the schema)
  KEYS[1] inbox (list)   KEYS[2] pending (list)   KEYS[3] leased (zset)   KEYS[4] payloads (hash)
  KEYS[5] delayed (zset) KEYS[6] dead (hash)      KEYS[7] ids (set)       KEYS[8] meta (hash)
ARGV
  ARGV[1]  msgpack array of the payloads (raw strings)
  ARGV[2]  msgpack array of their caller-given ids, aligned with the payloads; "" when the queue
           assigns every id
Returns {status, first_id, skipped}
  status    0 added; 1 the queue is closed and nothing was added
  first_id  with ARGV[2] "": the id given to the first item (the next ones follow by one); else 0
  skipped   how many items had a caller-given id that is live already (nothing added for them)
]]
local pending, dead, ids, meta = KEYS[2], KEYS[6], KEYS[7], KEYS[8]

if redis.call('HGET', meta, 'closed') then
  return {1, 0, 0}
end

local payloads = cmsgpack.unpack(ARGV[1])
local given = nil
if ARGV[2] ~= '' then given = cmsgpack.unpack(ARGV[2]) end

local next_id = 0
if not given then
  next_id = redis.call('HINCRBY', meta, 'seq', #payloads) - #payloads + 1
end
local first_id = next_id

-- RPUSH in slices: Lua's unpack() has a stack limit of about 8000 values.
local slice, added, skipped, superseded = {}, 0, 0, 0
local any_dead = given and redis.call('EXISTS', dead) == 1
for i = 1, #payloads do
  local id = next_id
  if given then
    id = given[i]
    if redis.call('SADD', ids, id) == 0 then
      skipped = skipped + 1
      id = nil
    elseif any_dead then
      -- A new item with the id of a dead letter replaces it: the dead one is dropped, not requeued.
      superseded = superseded + redis.call('HDEL', dead, id)
    end
  else
    next_id = next_id + 1
  end
  if id then
    -- '\147' is msgpack's 3-element array: the same bytes as cmsgpack.pack({id, 0, payload}),
    -- without building a table per item.
    slice[#slice + 1] = '\147' .. cmsgpack.pack(id, 0, payloads[i])
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
