
local RETENTION = ARGV[1]
-- A rejected bet moved no money: its record only answers retries, so it is kept briefly.
local REJECTED_RETENTION = math.min(tonumber(RETENTION), 600000)
-- A room's epoch and nonce outlive its last round by a week, then go (so names a player made
-- up do not stay forever); a room that comes back starts a new epoch.
local ROOM_IDLE_MS = 604800000
local function fmt(n) return string.format('%.0f', n) end

-- The ledger is the one this process started on, and the caller owns the room now.
local function guard()
  if ARGV[2] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[2] then return {'identity'} end
  if ARGV[3] ~= '' then
    local cur = redis.call('GET', KEYS[5]) or '0'
    if cur ~= ARGV[3] then return {'stale', cur} end
  end
  return false
end

-- Moves `amount` and appends the entry to the audit stream. The balances are read and their
-- bounds checked (a user payer may not go below zero, a system account not below -max, no
-- payee above max); the entry is appended next, which Redis refuses without writing anything
-- when the stream's last id is not below the next sequence number (`seq` reset or lost while
-- the log remained); only then are the sequence and the balances written.
local function move(key, kind, from, to, amount, memo, now, from_system, max)
  local b = redis.call('HMGET', KEYS[1], from, to)
  local fb = tonumber(b[1] or '0') - amount
  local tb = tonumber(b[2] or '0') + amount
  if not from_system and fb < 0 then return {'insufficient', fmt(fb + amount)} end
  if fb < -max then return {'overflow', from} end
  if tb > max then return {'overflow', to} end
  local seq = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
  local entry = cjson.encode({fmt(seq), key, kind, from, to, fmt(amount), fmt(fb), fmt(tb), now, memo})
  local added = redis.pcall('XADD', KEYS[3], fmt(seq) .. '-1', 'entry', entry)
  if type(added) == 'table' and added.err then return {'log', added.err} end
  redis.call('SET', KEYS[2], fmt(seq))
  redis.call('HSET', KEYS[1], from, fmt(fb), to, fmt(tb))
  return {'ok', entry, fmt(fb), fmt(tb)}
end

-- Settles the pending bet record `bk`; returns its previous state ('now' if this call settled
-- it) followed by the record's fields. The record's state is the payout's idempotency: it turns
-- 'settled' in the same step as the payout moves.
local function settle(bk, payout_key, account, payout_arg, roll, now, max, house)
  local rec = redis.call('HMGET', bk, 'state', 'round', 'wager')
  local st = rec[1]
  if not st then return {'unknown'} end
  if st ~= 'pending' then
    local r = redis.call('HGETALL', bk)
    table.insert(r, 1, st)
    return r
  end
  local payout = tonumber(payout_arg)
  local bal
  local outcome = 'lose'
  if payout > 0 then
    local t = move(payout_key, 'payout', house, account, payout, rec[2] or '', now, true,
      tonumber(max))
    if t[1] ~= 'ok' then return t end
    bal = t[4]
    outcome = 'win'
  else
    bal = redis.call('HGET', KEYS[1], account) or '0'
  end
  redis.call('HSET', bk, 'state', 'settled', 'roll', roll, 'payout', payout_arg,
    'outcome', outcome, 'balance', bal)
  redis.call('PEXPIRE', bk, RETENTION)
  return {'now', 'wager', rec[3], 'state', 'settled', 'roll', roll, 'payout', payout_arg,
    'outcome', outcome, 'balance', bal}
end

local refused = guard()
if refused then return refused end
