-- release.lua for one key, without the loop: the hot path.
-- KEYS[1]: the lock key; KEYS[2], on a cluster: its release channel (declared, so the
-- script is routed and checked by its slot). One server passes no KEYS[2]: the channel is
-- made here by the same rule (`{K}:released`, or `K:released` when K holds a `{tag}`),
-- which saves the client building it on every release. The waiters' mark (`{K}:waiters`,
-- set by a waiting try) is made here by the same rule, on a cluster too: it shares K's slot.
-- ARGV[1]: the token; ARGV[2]: the publish command, PUBLISH (one server) or SPUBLISH (a
-- cluster shard), or empty to release without announcing it (the mark is then kept).
-- Returns 1 when deleted (and, when someone marked the key as waited for, the release
-- announced, so that waiters try again at once), 0 when another token holds the lock (left
-- alone), -1 when there is no lock: it expired, was force-released, or an earlier send of
-- this same release deleted it.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  if ARGV[2] == '' then
    redis.call('DEL', KEYS[1])
    return 1
  end
  local base
  local open = string.find(KEYS[1], '{', 1, true)
  local close = open and string.find(KEYS[1], '}', open + 1, true)
  if close and close > open + 1 then
    base = KEYS[1] .. ':'
  else
    base = '{' .. KEYS[1] .. '}:'
  end
  -- The lock and the mark in one DEL: 2 means someone waits, so announce it.
  if redis.call('DEL', KEYS[1], base .. 'waiters') == 2 then
    redis.call(ARGV[2], KEYS[2] or (base .. 'released'), '')
  end
  return 1
end
if holder then
  return 0
end
return -1
