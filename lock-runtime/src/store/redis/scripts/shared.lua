-- Leases on a sorted set: the permits of a semaphore, the readers and the writer of a
-- read/write lock. Every operation on such a key is this one script, so that expired
-- leases are trimmed and the key's expiry follows its last lease in one atomic step.
--
-- KEYS[1]: the key, a sorted set of leases `tag:token` scored by when each lapses (server
--   time, ms). The tag tells kinds apart: `s3` a permit of a 3-permit semaphore, `r` a
--   reader, `w` the writer.
-- KEYS[2], for a read/write lock only: its `writers` companion, the writers waiting,
--   scored by when each one's intent lapses. While any waits, no new reader is let in
--   (writer preference).
-- ARGV[1]: the operation: acquire | extend | remaining. (A release is a plain `ZREM` of
--   the lease, see `Node::release`; `live.lua` counts the live leases.)
-- ARGV[2]: the lease (`tag:token`); ARGV[3]: ttl in ms; ARGV[4]: how many leases the key
--   admits (0: no limit); ARGV[5]: a refused writer's intent in ms (0: none).
--
-- Replies {code, value}:
--   acquire: {1, 0} taken (also when the lease was there already: a re-send);
--            {0, ms} refused, ms until the soonest lease lapses; {-1, tag} the key is
--            held as another kind (`lock` for an exclusive lock).
--   extend:  {1, 0} extended; {0, 0} the lease is gone.
--   remaining: {ms, 0}, or {-2, 0} when the lease is gone.
--
-- The key expires with its last lease (PEXPIREAT of the highest score), so a crashed
-- holder leaves nothing behind for longer than its ttl. A release does not shorten it:
-- until then the key may hold only lapsed leases, which every operation trims first.
-- The uncontended acquire is TIME, a trim, ZCARD, ZADD and PEXPIREAT.
local key, writers = KEYS[1], KEYS[2]
local op, member = ARGV[1], ARGV[2]
local tag = string.match(member, '^[^:]*')
local rw = tag == 'r' or tag == 'w'

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A set expires with its last entry.
local function settle(set)
  local last = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', set, last[2])
  end
end

-- The key holds something other than leases (an exclusive lock's token): a reply for op.
local function foreign()
  if op == 'acquire' then return {-1, 'lock'} end
  if op == 'remaining' then return {-2, 0} end
  return {0, 0}
end

local at = now()
local trimmed = redis.pcall('ZREMRANGEBYSCORE', key, '-inf', at)
if type(trimmed) == 'table' then return foreign() end

if op == 'acquire' then
  if rw then redis.call('ZREMRANGEBYSCORE', writers, '-inf', at) end
  local expires = at + tonumber(ARGV[3])
  local card = redis.call('ZCARD', key)
  local other
  if card > 0 then
    other = string.match(redis.call('ZRANGE', key, 0, 0)[1], '^[^:]*')
    local agrees = (rw and (other == 'r' or other == 'w')) or other == tag
    if not agrees then return {-1, other} end
    if redis.call('ZSCORE', key, member) then
      -- A re-send of an acquire that landed.
      redis.call('ZADD', key, expires, member)
      settle(key)
      return {1, 0}
    end
  end
  local free
  if tag == 'w' then
    free = card == 0
  elseif tag == 'r' then
    free = other ~= 'w' and redis.call('ZCARD', writers) == 0
  else
    free = card < tonumber(ARGV[4])
  end
  if free then
    redis.call('ZADD', key, expires, member)
    if card == 0 then
      redis.call('PEXPIREAT', key, expires)
    else
      settle(key)
    end
    if rw and redis.call('ZREM', writers, member) == 1 then settle(writers) end
    return {1, 0}
  end
  local intent = tonumber(ARGV[5])
  if intent > 0 then
    redis.call('ZADD', writers, at + intent, member)
    settle(writers)
  end
  local soonest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
  return {0, soonest and (tonumber(soonest) - at) or 0}
elseif op == 'extend' then
  if not redis.call('ZSCORE', key, member) then return {0, 0} end
  redis.call('ZADD', key, 'XX', at + tonumber(ARGV[3]), member)
  settle(key)
  return {1, 0}
elseif op == 'remaining' then
  local score = redis.call('ZSCORE', key, member)
  if not score then return {-2, 0} end
  return {tonumber(score) - at, 0}
end
return redis.error_reply('shared.lua: unknown operation ' .. tostring(op))
