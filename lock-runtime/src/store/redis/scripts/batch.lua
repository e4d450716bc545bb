-- Group commit on one server: the single-key takes and releases that callers of one
-- `Locker` made while earlier calls were out, in one call, in the order they queued, each
-- with its own answer (see `batch.rs`).
-- KEYS[i]: item i's lock key.
-- ARGV[1]: the publish command for releases (PUBLISH), or empty to announce nothing.
-- ARGV[2i], ARGV[2i+1]: item i's token, and what it is: its ttl in ms for a take, `f` and
-- the ttl for a fenced take, or '' for a release.
-- Returns, at i, item i's answer: a take 1 (taken) or 0 (held by someone); a fenced take
-- its fencing token (taken) or 0; a release as release_one.lua (1 deleted, and announced
-- when its key was marked as waited for; 0 another token's, -1 no lock); or, as a string, the error its own command raised (a key
-- of another type), without stopping the others (an error reply inside the array would
-- fail the whole answer).

-- A companion of a lock key in its slot: `{K}:suffix`, or `K:suffix` when K holds a
-- `{tag}` (as naming.rs builds them).
local function companion(key, suffix)
  local open = string.find(key, '{', 1, true)
  local close = open and string.find(key, '}', open + 1, true)
  if close and close > open + 1 then
    return key .. ':' .. suffix
  end
  return '{' .. key .. '}:' .. suffix
end

-- Counters below this were just created by INCR (protocol.rs: FENCE_SEEDED_MIN).
local SEEDED_MIN = 1000000000000000
-- How long a fence counter lives beyond the ttl once started (FENCE_RETENTION_MS).
local RETENTION_MS = 60000

-- The server's clock in µs, read once per batch (at its first fenced take): every take of
-- this batch comes after every take of an earlier batch, whose clock was read before this
-- one started, and `last` keeps the tokens of one key strictly rising within the batch.
local clock
local last = {}

-- The fencing token of a take that just succeeded, as the unbatched path gives it: the
-- counter's INCR, and at least the server's clock in µs (a replica promoted with a counter
-- that missed its old master's last INCRs still hands out greater tokens); a counter INCR
-- has just created starts at the clock and lives ttl + RETENTION_MS (seed_fence.lua).
local function fence(key, ttl)
  local counter = companion(key, 'fence')
  local f = redis.call('INCR', counter)
  if not clock then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  if f < SEEDED_MIN then
    if f < clock then
      f = clock
      redis.call('SET', counter, string.format('%.0f', f), 'PX', tonumber(ttl) + RETENTION_MS)
    end
  else
    f = math.max(f, clock)
  end
  local before = last[counter]
  if before and f <= before then
    -- A second take of this key in this batch, within the clock's microsecond: one more
    -- than the first, recorded so that later batches (and INCRs) go on from there.
    f = before + 1
    redis.call('SET', counter, string.format('%.0f', f), 'KEEPTTL')
  end
  last[counter] = f
  return f
end

local out = {}
for i = 1, #KEYS do
  local key, token, spec = KEYS[i], ARGV[2 * i], ARGV[2 * i + 1]
  if spec ~= '' then
    local fenced = string.byte(spec, 1) == 102 -- 'f'
    local ttl = fenced and string.sub(spec, 2) or spec
    local set = redis.pcall('SET', key, token, 'NX', 'PX', ttl)
    if not set then
      out[i] = 0
    elseif set.err then
      out[i] = set.err
    elseif fenced then
      out[i] = fence(key, ttl)
    else
      out[i] = 1
    end
  else
    local holder = redis.pcall('GET', key)
    if type(holder) == 'table' and holder.err then
      out[i] = holder.err
    elseif holder == token then
      if ARGV[1] == '' then
        redis.call('DEL', key)
      elseif redis.call('DEL', key, companion(key, 'waiters')) == 2 then
        -- Someone marked the key as waited for: announce the release.
        redis.call(ARGV[1], companion(key, 'released'), '')
      end
      out[i] = 1
    elseif holder then
      out[i] = 0
    else
      out[i] = -1
    end
  end
end
return out
