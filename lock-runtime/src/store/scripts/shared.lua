-- Leases on a sorted set: the permits of a semaphore, the readers and the writer of a
-- read/write lock. Every operation on such a key is this one script, so that expired
-- leases are trimmed and the key's expiry follows its last lease in one atomic step.
--
-- KEYS[1]: the key, a sorted set of leases `tag:token` scored by when each lapses (server
--   time, ms). The tag tells kinds apart: `s3` a permit of a 3-permit semaphore, `r` a
--   reader, `w` the writer.
-- KEYS[2]: its `writers` companion: the writers waiting, scored by when each one's
--   intent lapses. While any waits, no new reader is let in (writer preference).
-- KEYS[3]: its release channel.
-- ARGV[1]: the operation: acquire | release | undo | extend | remaining | holders.
-- ARGV[2]: the lease (`tag:token`); ARGV[3]: ttl in ms; ARGV[4]: how many leases the key
--   admits (0: no limit); ARGV[5]: a refused writer's intent in ms (0: none);
--   ARGV[6]: the publish command (PUBLISH, SPUBLISH, or empty to announce nothing).
--
-- Replies {code, value}:
--   acquire: {1, 0} taken (also when the lease was there already: a re-send);
--            {0, ms} refused, ms until the soonest lease lapses; {-1, tag} the key is
--            held as another kind (`lock` for an exclusive lock).
--   release: {1, 0} released; {-1, 0} the lease was gone (expired or force-released).
--            A waiting writer's intent is withdrawn too.
--   undo:    as release, but a waiting writer's intent stays and nothing is announced
--            (Redlock taking back a lease that won no quorum, while the writer waits on).
--   extend:  {1, 0} extended; {0, 0} the lease is gone.
--   remaining: {ms, 0}, or {-2, 0} when the lease is gone.
--   holders: {count, 0}.
local key, writers, channel = KEYS[1], KEYS[2], KEYS[3]
local op, member = ARGV[1], ARGV[2]
local kind = redis.call('TYPE', key)['ok']
if kind ~= 'zset' and kind ~= 'none' then
  if op == 'acquire' then return {-1, 'lock'} end
  if op == 'holders' then return {1, 0} end
  if op == 'remaining' then return {-2, 0} end
  return {op == 'release' and -1 or 0, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
redis.call('ZREMRANGEBYSCORE', writers, '-inf', now)

-- Each set expires with its last entry.
local function settle(set)
  local last = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', set, last[2])
  end
end

if op == 'acquire' then
  local expires = now + tonumber(ARGV[3])
  if redis.call('ZSCORE', key, member) then
    redis.call('ZADD', key, expires, member)
    settle(key)
    return {1, 0}
  end
  local tag = string.match(member, '^[^:]*')
  local first = redis.call('ZRANGE', key, 0, 0)[1]
  local other = first and string.match(first, '^[^:]*')
  local rw = tag == 'r' or tag == 'w'
  if other then
    local agrees = (rw and (other == 'r' or other == 'w')) or other == tag
    if not agrees then return {-1, other} end
  end
  local free
  if tag == 'w' then
    free = not first
  elseif tag == 'r' then
    free = other ~= 'w' and redis.call('ZCARD', writers) == 0
  else
    free = redis.call('ZCARD', key) < tonumber(ARGV[4])
  end
  if free then
    redis.call('ZADD', key, expires, member)
    settle(key)
    if redis.call('ZREM', writers, member) == 1 then settle(writers) end
    return {1, 0}
  end
  local intent = tonumber(ARGV[5])
  if intent > 0 then
    redis.call('ZADD', writers, now + intent, member)
    settle(writers)
  end
  local soonest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
  return {0, soonest and (tonumber(soonest) - now) or 0}
elseif op == 'release' then
  local removed = redis.call('ZREM', key, member)
  local withdrawn = redis.call('ZREM', writers, member)
  settle(key)
  settle(writers)
  if removed + withdrawn > 0 and ARGV[6] ~= '' then
    redis.call(ARGV[6], channel, '')
  end
  return {removed == 1 and 1 or -1, 0}
elseif op == 'undo' then
  local removed = redis.call('ZREM', key, member)
  settle(key)
  return {removed == 1 and 1 or -1, 0}
elseif op == 'extend' then
  if not redis.call('ZSCORE', key, member) then return {0, 0} end
  redis.call('ZADD', key, 'XX', now + tonumber(ARGV[3]), member)
  settle(key)
  return {1, 0}
elseif op == 'remaining' then
  local score = redis.call('ZSCORE', key, member)
  if not score then return {-2, 0} end
  return {tonumber(score) - now, 0}
elseif op == 'holders' then
  return {redis.call('ZCARD', key), 0}
end
return redis.error_reply('shared.lua: unknown operation ' .. tostring(op))
