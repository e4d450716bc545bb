-- Take several locks at once, all or none, and optionally a fencing token.
-- KEYS[1..n]: lock keys; ARGV[1]: token; ARGV[2]: ttl in ms;
-- ARGV[3]: 1 to fence, else 0; ARGV[4]: how long the fence counter is kept, in ms.
-- With fencing, KEYS[n+1] is the counter of KEYS[1]: `{<KEYS[1]>}:fence`.
-- Returns the fencing token (or 0 without fencing), or false when any lock is held.
--
-- The token is max(last + 1, server time in microseconds): strictly greater than every
-- earlier one while the counter lives, and still greater after it has expired, because
-- time has moved on since (unless the server's clock is stepped backwards).
local fenced = ARGV[3] == '1'
local n = #KEYS
if fenced then n = n - 1 end
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return false
  end
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
if not fenced then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[n + 1]) or '0')
local fence = math.max(last + 1, now)
redis.call('SET', KEYS[n + 1], string.format('%.0f', fence), 'PX', ARGV[4])
return fence
