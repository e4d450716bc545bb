-- Group commit on one server: the single-key takes and releases that callers of one
-- `Locker` made while an earlier call was out, in one call, in the order they queued,
-- each with its own answer (see `batch.rs`).
-- KEYS[i]: item i's lock key.
-- ARGV[1]: the publish command for releases (PUBLISH), or empty to announce nothing.
-- ARGV[2i], ARGV[2i+1]: item i's token, and its ttl in ms for a take or '' for a release.
-- Returns, at i, item i's answer: a take 1 (taken) or 0 (held by someone); a release as
-- release_one.lua (1 deleted and announced, 0 another token's, -1 no lock); or, as a
-- string, the error its own command raised (a key of another type), without stopping the
-- others (an error reply inside the array would fail the whole answer).
local out = {}
for i = 1, #KEYS do
  local key, token, ttl = KEYS[i], ARGV[2 * i], ARGV[2 * i + 1]
  if ttl ~= '' then
    local set = redis.pcall('SET', key, token, 'NX', 'PX', ttl)
    if not set then
      out[i] = 0
    elseif set.err then
      out[i] = set.err
    else
      out[i] = 1
    end
  else
    local holder = redis.pcall('GET', key)
    if type(holder) == 'table' and holder.err then
      out[i] = holder.err
    elseif holder == token then
      redis.call('DEL', key)
      local open = string.find(key, '{', 1, true)
      local close = open and string.find(key, '}', open + 1, true)
      local channel
      if close and close > open + 1 then
        channel = key .. ':released'
      else
        channel = '{' .. key .. '}:released'
      end
      if ARGV[1] ~= '' then
        redis.call(ARGV[1], channel, '')
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
