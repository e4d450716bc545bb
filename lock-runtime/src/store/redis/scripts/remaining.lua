-- The smallest PTTL (ms) of the locks if ARGV[1] (the caller's token) owns them all, else -2.
-- KEYS: the lock keys.
local least = -1
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) ~= ARGV[1] then
    return -2
  end
  local pttl = redis.call('PTTL', key)
  if least < 0 or pttl < least then
    least = pttl
  end
end
return least
