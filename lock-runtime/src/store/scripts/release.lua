-- Delete the locks that ARGV[1] (the caller's token) still owns. A lock whose waiting
-- marker exists has someone queued for it: delete the marker and announce the release on
-- `<key>:released`, so that they try again at once. Unawaited releases publish nothing.
-- KEYS[1..n]: the lock keys; KEYS[n+1..2n]: their markers, `{<key>}:waiting`.
-- Returns how many locks were deleted; fewer than n means some lock had expired or
-- passed to another holder, and that one was left alone.
local n = #KEYS / 2
local deleted = 0
for i = 1, n do
  local key = KEYS[i]
  if redis.call('GET', key) == ARGV[1] then
    deleted = deleted + redis.call('DEL', key)
    if redis.call('DEL', KEYS[n + i]) == 1 then
      redis.call('PUBLISH', key .. ':released', '')
    end
  end
end
return deleted
