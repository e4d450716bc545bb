-- release.lua for one key, without the loop: the hot path.
-- KEYS[1]: the lock key; KEYS[2]: its release channel; ARGV[1]: the token;
-- ARGV[2]: the publish command, PUBLISH (one server) or SPUBLISH (a cluster shard).
-- Returns 1 when deleted (and the release announced, so that waiters try again at once),
-- 0 when another token holds the lock (left alone), -1 when there is no lock: it expired,
-- was force-released, or an earlier send of this same release deleted it.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call(ARGV[2], KEYS[2], '')
  return 1
end
if holder then
  return 0
end
return -1
