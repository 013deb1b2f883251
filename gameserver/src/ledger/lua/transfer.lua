
local prev = redis.call('GET', KEYS[6])
if prev then return {'dup', prev} end
local t = move(ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[9], ARGV[10],
  ARGV[11] == '1', tonumber(ARGV[12]))
if t[1] == 'ok' then redis.call('SET', KEYS[6], t[2], 'PX', RETENTION) end
return t
