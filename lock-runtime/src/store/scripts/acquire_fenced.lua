-- Take the lock and, in the same round trip, a fencing token.
-- KEYS[1]: lock key; KEYS[2]: its fence counter, `{<lock key>}:fence` (same cluster slot).
-- ARGV[1]: token; ARGV[2]: ttl in ms; ARGV[3]: how long the counter is kept, in ms.
-- Returns the fencing token, or false when the lock is held.
--
-- The token is max(last + 1, server time in microseconds): strictly greater than every
-- earlier one while the counter lives, and still greater after it has expired, because
-- time has moved on since (unless the server's clock is stepped backwards).
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local fence = math.max(last + 1, now)
redis.call('SET', KEYS[2], string.format('%.0f', fence), 'PX', ARGV[3])
return fence
