
local v = redis.call('GET', KEYS[6])
if v and cjson.decode(v).roundId == ARGV[4] then redis.call('DEL', KEYS[6]) end
redis.call('PEXPIRE', KEYS[7], RETENTION)
return {'ok'}
