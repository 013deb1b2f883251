
local cur = tonumber(redis.call('GET', KEYS[5]) or '0')
local want = tonumber(ARGV[4])
if cur < want then redis.call('SET', KEYS[5], ARGV[4]) end
redis.call('PEXPIRE', KEYS[5], ROOM_IDLE_MS)
return {'ok', fmt(math.max(cur, want))}
