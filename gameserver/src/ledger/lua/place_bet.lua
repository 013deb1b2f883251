
if redis.call('EXISTS', KEYS[6]) == 1 then
  local r = redis.call('HGETALL', KEYS[6])
  table.insert(r, 1, 'existing')
  return r
end
if redis.call('EXISTS', KEYS[8]) == 1 then return {'closed'} end
local t = move(ARGV[4], 'bet', ARGV[5], ARGV[11], tonumber(ARGV[6]), ARGV[8], ARGV[9],
  false, tonumber(ARGV[10]))
if t[1] == 'ok' then
  redis.call('HSET', KEYS[6], 'wager', ARGV[7], 'state', 'pending', 'balance', t[3], 'round', ARGV[8])
  redis.call('RPUSH', KEYS[7], KEYS[6])
  return {'accepted', t[3]}
elseif t[1] == 'insufficient' then
  redis.call('HSET', KEYS[6], 'wager', ARGV[7], 'state', 'rejected',
    'reason', 'INSUFFICIENT_BALANCE', 'balance', t[2], 'round', ARGV[8])
  redis.call('PEXPIRE', KEYS[6], RETENTION)
  return {'insufficient', 'wager', ARGV[7], 'state', 'rejected',
    'reason', 'INSUFFICIENT_BALANCE', 'balance', t[2], 'round', ARGV[8]}
end
return t
