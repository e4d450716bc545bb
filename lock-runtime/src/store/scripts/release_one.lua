-- release.lua for one key, without the loop: the hot path.
-- KEYS[1]: the lock key; ARGV[1]: the token.
-- Returns 1 when deleted (and the release announced on `<key>:released`, so that waiters
-- try again at once), 0 when the lock was not the caller's.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[1] .. ':released', '')
return 1
