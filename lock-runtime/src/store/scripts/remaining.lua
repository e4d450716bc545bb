-- The lock's PTTL in ms if ARGV[1] (the caller's token) still owns it, else -2.
-- KEYS[1]: lock key.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PTTL', KEYS[1])
end
return -2
