
redis.call('SET', KEYS[6], '1', 'EX', 86400)
return {'ok'}
