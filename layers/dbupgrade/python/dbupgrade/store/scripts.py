"""Every Lua script dbupgrade runs in Redis (each one atomic: one round trip, no interleaving).

Floats travel as strings: Lua numbers returned to Redis are truncated to integers.
"""

from __future__ import annotations

# The one write that finishes an outcome.
# KEYS: 1 latest, 2 history, 3 in-flight set, 4 following, 5 outbox, 6 claim,
#       7 (optional) the keyed request's answer: the outcome is its final answer
# ARGV: 1 outcome JSON, 2 instance id, 3 history length,
#       4 expected identity of the followed outcome ("" unless the tracker writes: compare-and-set),
#       5 role: "submitted" (a new upgrade: followed from now on), "in_flight", or "done",
#       6 outbox entry JSON or "",
#       7 claim change "", "accept", "release" or "release_version", 8 its owner (or target version),
#       9 the accepted claim's JSON, 10 its time to live (seconds),
#       11 (with KEYS[7]) the answer's time to live (seconds).
# Returns 1 when written, 0 when the followed outcome changed under the tracker (nothing written).
FINISH = """
local function s(v) if v == nil or v == cjson.null then return '' end return tostring(v) end
local following = redis.call('GET', KEYS[4])
if ARGV[4] ~= '' then
  if not following then return 0 end
  local f = cjson.decode(following)
  if s(f.at)..'|'..s(f.status)..'|'..s(f.request_id)..'|'..s(f.to_version) ~= ARGV[4] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
if ARGV[5] == 'submitted' or (ARGV[5] == 'in_flight' and (ARGV[4] ~= '' or not following)) then
  redis.call('SET', KEYS[4], ARGV[1])
  redis.call('SADD', KEYS[3], ARGV[2])
elseif ARGV[5] == 'done' and ARGV[4] ~= '' then
  redis.call('DEL', KEYS[4])
  redis.call('SREM', KEYS[3], ARGV[2])
end
if ARGV[6] ~= '' then redis.call('RPUSH', KEYS[5], ARGV[6]) end
if ARGV[7] ~= '' then
  local held = redis.call('GET', KEYS[6])
  if held then
    local c = cjson.decode(held)
    if ARGV[7] == 'accept' and c.owner == ARGV[8] then
      redis.call('SET', KEYS[6], ARGV[9], 'EX', tonumber(ARGV[10]))
    elseif (ARGV[7] == 'release' and c.owner == ARGV[8])
        or (ARGV[7] == 'release_version' and c.to_version == ARGV[8]) then
      redis.call('DEL', KEYS[6])
    end
  end
end
if #KEYS >= 7 then redis.call('SET', KEYS[7], ARGV[1], 'EX', tonumber(ARGV[11])) end
return 1
"""

# Claim a campaign's digest of one day and queue it in the outbox, both or neither: one digest per
# campaign per day however many ticks run, at once or later. KEYS: 1 the day's claim, 2 outbox.
# ARGV: 1 the outbox entry JSON, 2 the claim's time to live (seconds). Returns 1 when claimed now.
DIGEST = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[2])) then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
"""

# Take an instance's claim: KEYS[1] the claim; ARGV: 1 claim JSON, 2 its owner, 3 time to live.
# Free, or already this owner's (a redelivery after its holder died): taken, returns nil.
# Held by another owner: returns the holder's JSON, untouched.
_CLAIM_BODY = """
local held = redis.call('GET', KEYS[1])
if held then
  local c = cjson.decode(held)
  if c.owner ~= ARGV[2] then return held end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[3]))
"""
CLAIM = _CLAIM_BODY + "return nil\n"

# Token bucket take (``dbupgrade.ratelimit``): the bucket hash, its ceiling, the longest wait the
# caller accepts, the hash's time to live. Returns {granted (1|0), wait seconds, current rate}.
_TAKE_FUNCTION = """
local function take(key, ceiling_text, max_wait_text, ttl_text)
  local ceiling = tonumber(ceiling_text)
  local max_wait = tonumber(max_wait_text)
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
  local state = redis.call('HMGET', key, 'tokens', 'stamp', 'rate')
  local rate = math.min(tonumber(state[3]) or ceiling, ceiling)
  local capacity = math.max(1, rate)
  local tokens = tonumber(state[1]) or capacity
  local stamp = tonumber(state[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - stamp) * rate)
  local wait = 0
  if tokens < 1 then wait = (1 - tokens) / rate end
  local granted = 0
  if wait <= max_wait then
    tokens = tokens - 1
    granted = 1
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'stamp', tostring(now), 'rate', tostring(rate))
  redis.call('EXPIRE', key, tonumber(ttl_text))
  return {granted, tostring(wait), tostring(rate)}
end
"""

# KEYS[1]: the bucket hash; ARGV: ceiling, max_wait, ttl. Returns ``take``'s reply.
RATE_TAKE = _TAKE_FUNCTION + "return take(KEYS[1], ARGV[1], ARGV[2], ARGV[3])\n"

# Several buckets' takes in one round trip (the reads a request is about to make, ``RateLimiter.take_many``):
# each bucket taken exactly as RATE_TAKE takes it, on its own. KEYS: the bucket hashes; ARGV: per
# bucket, its ceiling, max_wait and ttl (three each, in KEYS' order). Returns one ``take`` reply per key.
RATE_TAKE_MANY = (
    _TAKE_FUNCTION
    + """
local replies = {}
for i, key in ipairs(KEYS) do
  replies[i] = take(key, ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i])
end
return replies
"""
)

# The claim, and when it is taken the upgrade call's rate-limit token, in one round trip (the
# submission's next step is that call). KEYS: 1 the claim, 2 the bucket hash; ARGV: 1-3 as CLAIM,
# 4-6 as RATE_TAKE's. Held by another owner: {holder's JSON} (no token taken); taken:
# {"", granted, wait, rate}.
CLAIM_TAKE = (
    _TAKE_FUNCTION
    + _CLAIM_BODY.replace("return held end", "return {held} end")
    + "local token = take(KEYS[2], ARGV[4], ARGV[5], ARGV[6])\n"
    + "return {'', token[1], token[2], token[3]}\n"
)

# KEYS[1]: the bucket hash; ARGV: ceiling, "decrease" | "increase", ttl, decrease interval,
# floor, decrease factor, increase step. Returns the new rate.
RATE_ADJUST = """
local ceiling = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp', 'rate', 'decreased_at')
local rate = math.min(tonumber(state[3]) or ceiling, ceiling)
if ARGV[2] == 'decrease' then
  if now - (tonumber(state[4]) or 0) >= tonumber(ARGV[4]) then
    local tokens = tonumber(state[1]) or math.max(1, rate)
    local stamp = tonumber(state[2]) or now
    tokens = tokens + math.max(0, now - stamp) * rate
    rate = math.max(tonumber(ARGV[5]), rate * tonumber(ARGV[6]))
    -- the burst shrinks with the rate (reserved tokens, a negative count, stay owed)
    tokens = math.min(math.max(1, rate), tokens)
    redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now),
               'rate', tostring(rate), 'decreased_at', tostring(now))
  end
else
  rate = math.min(ceiling, rate + tonumber(ARGV[7]))
  redis.call('HSET', KEYS[1], 'rate', tostring(rate))
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return tostring(rate)
"""

# Take the oldest outbox entry onto the claimed list if it is due (its writer is no longer
# publishing it: ``not_before`` passed). KEYS: 1 outbox, 2 claimed. ARGV: 1 now (epoch seconds).
# Returns the entry, or nil when the outbox is empty or its head is not due yet (entries are in
# write order, so what stands behind a not-yet-due head is newer still).
CLAIM_DUE = """
local entry = redis.call('LINDEX', KEYS[1], 0)
if not entry then return nil end
local due = tonumber(cjson.decode(entry).not_before or 0)
if due and due > tonumber(ARGV[1]) then return nil end
redis.call('LPOP', KEYS[1])
redis.call('RPUSH', KEYS[2], entry)
return entry
"""

# Put claimed entries back at the head of the outbox, oldest first (a drain that failed or died).
# KEYS: 1 outbox, 2 claimed. Returns how many moved.
UNCLAIM = """
local entry = redis.call('RPOP', KEYS[2])
local moved = 0
while entry do
  redis.call('LPUSH', KEYS[1], entry)
  moved = moved + 1
  entry = redis.call('RPOP', KEYS[2])
end
return moved
"""
