-- Delete the locks that ARGV[1] (the caller's token) still owns, and announce each
-- release on its channel, so that waiters try again at once.
-- KEYS[1..n]: the lock keys; KEYS[n+1..2n]: their release channels, in the same order.
-- ARGV[2]: the publish command, PUBLISH (one server) or SPUBLISH (a cluster shard), or
-- empty to release without announcing it.
-- Returns {deleted, foreign}: how many were deleted, and how many are held by another
-- token (those are left alone). The rest had no lock: expired, force-released, or deleted
-- by an earlier send of this same release.
local n = #KEYS / 2
local deleted, foreign = 0, 0
for i = 1, n do
  local holder = redis.call('GET', KEYS[i])
  if holder == ARGV[1] then
    deleted = deleted + redis.call('DEL', KEYS[i])
    if ARGV[2] ~= '' then
      redis.call(ARGV[2], KEYS[n + i], '')
    end
  elseif holder then
    foreign = foreign + 1
  end
end
return {deleted, foreign}
