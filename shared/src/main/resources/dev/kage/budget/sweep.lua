-- Releases holds whose time is up (their worker died, or never settled): KEYS 1 holds, 2 expiry;
-- ARGV 1 how many at most. Returns how many were released.
return sweep(KEYS[1], KEYS[2], now_ms(), tonumber(ARGV[1]))
