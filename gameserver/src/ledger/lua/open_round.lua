
local cur = redis.call('GET', KEYS[6])
if cur then
  local id = cjson.decode(cur).roundId
  if id ~= ARGV[5] then return {'open', id} end
end
redis.call('SET', KEYS[6], ARGV[4])
return {'ok'}
