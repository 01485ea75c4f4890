dofile(os.getenv("BENCH_LUA") .. "/common.lua")
function request()
  local body = '{"query": "query($r: MemberRef!) { member(ref: $r) { balance { available ' ..
    'pending held } } }", "variables": {"r": {"phone": "' .. pick(PHONES) .. '"}}}'
  return gql(pick(TOKENS), body)
end
