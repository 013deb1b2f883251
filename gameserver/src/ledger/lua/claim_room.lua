
local epoch = redis.call('INCR', KEYS[5])
redis.call('PEXPIRE', KEYS[5], ROOM_IDLE_MS)
return {'ok', tostring(epoch)}
