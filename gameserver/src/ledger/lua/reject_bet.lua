
if redis.call('EXISTS', KEYS[6]) == 0 then
  redis.call('HSET', KEYS[6], 'wager', ARGV[4], 'state', 'rejected', 'reason', ARGV[5], 'round', '')
  redis.call('PEXPIRE', KEYS[6], REJECTED_RETENTION)
end
local r = redis.call('HGETALL', KEYS[6])
table.insert(r, 1, 'ok')
return r
