
local info = redis.pcall('XINFO', 'STREAM', KEYS[3])
if type(info) == 'table' and not info.err then
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      local top = tonumber(string.match(info[i + 1], '^(%d+)-'))
      local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
      if top and top > seq then
        return {'log', 'the audit stream is at ' .. info[i + 1] .. ', ledger:seq at ' .. fmt(seq)}
      end
    end
  end
end
local out = {'ok'}
for i = 0, #KEYS - 6 do
  local a = 7 + 4 * i
  out[i + 2] = settle(KEYS[6 + i], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[4],
    ARGV[5], ARGV[6])
end
return out
