-- Delete the lock only if ARGV[1] (the caller's token) still owns it.
-- KEYS[1]: lock key. Returns 1 when deleted, 0 when the lock was not the caller's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
