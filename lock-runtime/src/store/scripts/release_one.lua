-- release.lua for one key, without the loop: the hot path.
-- KEYS[1]: the lock key; KEYS[2]: its marker, `{<key>}:waiting`; ARGV[1]: the token.
-- Returns 1 when deleted, 0 when the lock was not the caller's.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('PUBLISH', KEYS[1] .. ':released', '')
end
return 1
