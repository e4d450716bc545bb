-- Start a fence counter that INCR has just created (or that was never started): set it
-- to the server time in microseconds, kept ARGV[1] ms, and return it as the token.
-- Only the lock's holder calls this, so no other holder can take a token meanwhile;
-- failed tries may have bumped the counter, which changes nothing.
-- KEYS[1]: the counter, the lock key's `:fence` companion.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v < now then
  v = now
  redis.call('SET', KEYS[1], string.format('%.0f', v), 'PX', ARGV[1])
end
return v
