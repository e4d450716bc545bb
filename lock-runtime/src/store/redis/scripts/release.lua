-- Delete the locks that ARGV[1] (the caller's token) still owns, and announce the release
-- of each that someone marked as waited for (its `:waiters` companion, set by a waiting
-- try and deleted here) on its channel, so that waiters try again at once.
-- KEYS[1..n]: the lock keys; KEYS[n+1..2n]: their release channels, in the same order.
-- ARGV[2]: the publish command, PUBLISH (one server) or SPUBLISH (a cluster shard), or
-- empty to release without announcing it (the marks are then kept).
-- Returns {deleted, foreign}: how many were deleted, and how many are held by another
-- token (those are left alone). The rest had no lock: expired, force-released, or deleted
-- by an earlier send of this same release.
-- A companion of a lock key in its slot (as naming.rs builds them).
local function companion(key, suffix)
  local open = string.find(key, '{', 1, true)
  local close = open and string.find(key, '}', open + 1, true)
  if close and close > open + 1 then
    return key .. ':' .. suffix
  end
  return '{' .. key .. '}:' .. suffix
end

local n = #KEYS / 2
local deleted, foreign = 0, 0
for i = 1, n do
  local holder = redis.call('GET', KEYS[i])
  if holder == ARGV[1] then
    if ARGV[2] == '' then
      deleted = deleted + redis.call('DEL', KEYS[i])
    else
      -- The lock and its mark in one DEL: 2 means someone waits.
      if redis.call('DEL', KEYS[i], companion(KEYS[i], 'waiters')) == 2 then
        redis.call(ARGV[2], KEYS[n + i], '')
      end
      deleted = deleted + 1
    end
  elseif holder then
    foreign = foreign + 1
  end
end
return {deleted, foreign}
