-- EncodedArgsTest: a reply of each type, chosen by ARGV[1]; otherwise how many arguments it received.
if ARGV[1] == 'value' then
  return ARGV[2]
elseif ARGV[1] == 'status' then
  return redis.status_reply('OK')
elseif ARGV[1] == 'boolean' then
  return 1
elseif ARGV[1] == 'fail' then
  return redis.error_reply('asked to fail')
end
return #ARGV
