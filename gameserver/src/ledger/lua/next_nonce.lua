
local n = redis.call('INCR', KEYS[6])
redis.call('PEXPIRE', KEYS[6], ROOM_IDLE_MS)
redis.call('PEXPIRE', KEYS[5], ROOM_IDLE_MS)
return {'ok', tostring(n)}
