-- Delete the locks that ARGV[1] (the caller's token) still owns, and announce each
-- release on `<key>:released`, so that waiters try again at once.
-- KEYS: the lock keys. Returns how many were deleted; fewer than #KEYS means some lock
-- had expired or passed to another holder, and that one was left alone.
local deleted = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    deleted = deleted + redis.call('DEL', key)
    redis.call('PUBLISH', key .. ':released', '')
  end
end
return deleted
