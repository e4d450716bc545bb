-- Reset the lock's expiry only if ARGV[1] (the caller's token) still owns it.
-- KEYS[1]: lock key; ARGV[2]: new ttl in ms. Returns 1 when extended, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
