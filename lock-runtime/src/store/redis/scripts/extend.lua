-- Reset the expiry of every lock, only if ARGV[1] (the caller's token) owns them all.
-- KEYS: the lock keys; ARGV[2]: new ttl in ms. Returns 1 when extended, 0 otherwise.
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) ~= ARGV[1] then
    return 0
  end
end
for _, key in ipairs(KEYS) do
  redis.call('PEXPIRE', key, ARGV[2])
end
return 1
