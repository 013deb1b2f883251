
redis.call('SET', KEYS[6], '1', 'EX', 86400)
-- A shard's copy of the room's epoch lives as long as the room runs rounds.
redis.call('PEXPIRE', KEYS[5], ROOM_IDLE_MS)
return {'ok'}
