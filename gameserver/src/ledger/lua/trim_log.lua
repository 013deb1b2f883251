
local through = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if through > last then return {-1, last} end
local removed = redis.call('XTRIM', KEYS[2], 'MINID', string.format('%.0f', through + 1) .. '-0')
local before = tonumber(redis.call('GET', KEYS[3]) or '0')
if through > before then redis.call('SET', KEYS[3], ARGV[1]) else through = before end
return {removed, through}
