-- Take one or several locks at once, all or none, and optionally a fencing token.
-- KEYS[1..n]: lock keys; ARGV[1]: token; ARGV[2]: ttl in ms;
-- ARGV[3]: 1 to fence, else 0; ARGV[4]: how long the fence counter is kept, in ms;
-- ARGV[5]: for a waiting try, how long its mark on a held key is kept, in ms (else 0).
-- With fencing, KEYS[n+1] is the fence counter of KEYS[1] (its `:fence` companion).
-- Returns the fencing token (or 0 without fencing), or false when any lock is held by
-- another token. Locks already held by ARGV[1] count as taken, so a re-sent call (the
-- cluster client re-sends after I/O errors and redirects) succeeds as the first did.
--
-- The token is INCR of the counter, which starts (when absent, or below 1e15 because
-- only INCR has touched it) at the server time in microseconds and expires ARGV[4] ms
-- later, however much it is used: strictly greater than every earlier token while the
-- counter lives, and still greater after it expired and restarted, because more
-- microseconds have passed since its start than tokens were handed out (unless the
-- server's clock steps backwards). One-off keys leave nothing behind for long, and a busy
-- key's counter costs one INCR per fenced lock. Single keys do the same without Lua: a
-- pipelined SET NX + INCR, and `seed_fence.lua` when the INCR shows a new counter.
local fenced = ARGV[3] == '1'
local n = #KEYS
if fenced then n = n - 1 end
-- A waiting try marks each key held by another as waited for (its `:waiters` companion,
-- kept ARGV[5] ms), so that its release is announced; 0: not waiting.
local mark = tonumber(ARGV[5] or '0')
local refused = false
for i = 1, n do
  local holder = redis.call('GET', KEYS[i])
  if holder and holder ~= ARGV[1] then
    if mark <= 0 then
      return false
    end
    refused = true
    local key = KEYS[i]
    local open = string.find(key, '{', 1, true)
    local close = open and string.find(key, '}', open + 1, true)
    local waiters
    if close and close > open + 1 then
      waiters = key .. ':waiters'
    else
      waiters = '{' .. key .. '}:waiters'
    end
    redis.call('SET', waiters, '1', 'PX', mark)
  end
end
if refused then
  return false
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
if not fenced then
  return 0
end
local counter = KEYS[n + 1]
local fence = redis.call('INCR', counter)
-- Never below the server's clock (µs): a replica promoted with a counter that missed the
-- last INCRs still hands out greater tokens than its old master did.
local t0 = redis.call('TIME')
local clock = tonumber(t0[1]) * 1000000 + tonumber(t0[2])
if fence >= 1e15 and fence < clock then
  fence = clock
  redis.call('SET', counter, string.format('%.0f', fence), 'PX', ARGV[4])
end
if fence < 1e15 then
  -- A new counter (first use, or its retention ran out): start it at the server time.
  local t = redis.call('TIME')
  fence = tonumber(t[1]) * 1000000 + tonumber(t[2])
  redis.call('SET', counter, string.format('%.0f', fence), 'PX', ARGV[4])
end
return fence
