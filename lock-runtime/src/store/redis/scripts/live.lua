-- Who holds KEYS[1] now: an exclusive lock's token (a string), the number of live leases
-- of a semaphore or read/write lock (an integer: leases whose time has not passed, since
-- a released lease can leave expired ones behind until the key's own expiry), or nil.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'zset' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%.0f', now), '+inf')
end
if kind == 'string' then
  return redis.call('GET', KEYS[1])
end
return false
