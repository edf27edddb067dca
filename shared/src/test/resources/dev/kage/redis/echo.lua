-- EncodedArgsTest: answers with its KEYS, then its ARGV, as Redis received them.
local out = {}
for i = 1, #KEYS do
  out[#out + 1] = KEYS[i]
end
for i = 1, #ARGV do
  out[#out + 1] = ARGV[i]
end
return out
