--[[ A lease with nothing but the commands a lease of each item needs: the floor of per-item leases.

Not rediswq's lease.lua: no check, no reclaim, no retry, no counter, no quarantine. Run in its place
by `lua_cost.py --variant bare=variants/bare_lease.lua` (its KEYS, ARGV and reply are lease.lua's) to
price what no per-item lease can do without: take the items off pending (LRANGE, LTRIM), record a
lease per item (ZADD; with lease.lua's long sentinel member, so that Redis keeps the key a skiplist,
not a listpack whose every ZADD and ZREM scans it), and drop the lease of each item completed (ZREM).
]]
local pending, leased = KEYS[2], KEYS[3]
local count = tonumber(ARGV[1])
if #ARGV > 6 then redis.call('ZREM', leased, unpack(ARGV, 7)) end
local taken = redis.call('LRANGE', pending, '0', string.format('%d', count - 1))
redis.call('LTRIM', pending, string.format('%d', #taken), '-1')
local t = redis.call('TIME')
local deadline = string.format('%d', tonumber(t[1]) * 1000 + 60000)
local tail = cmsgpack.pack(1, ARGV[5], tonumber(t[1]) * 1000, 60000)
local scored, reply = {}, {0, -1, deadline, 0, 0}
for i, envelope in ipairs(taken) do
  local handle = envelope .. tail
  scored[2 * i - 1], scored[2 * i] = deadline, handle
  reply[5 + i] = handle
end
if #taken > 0 then
  redis.call('ZADD', leased, 'NX', 'inf', 'rediswq:sentinel: keeps this key out of the small listpack encoding; never a lease')
  redis.call('ZADD', leased, unpack(scored))
end
return reply
