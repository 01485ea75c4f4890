-- Scenario 2 (all partners) or 3 (BENCH_HOT=1: every earn from one partner).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local hot = os.getenv("BENCH_HOT") == "1"
function request()
  local token = hot and TOKENS[1] or pick(TOKENS)
  local body = '{"query": "mutation($i: EarnPointsInput!) { earnPoints(input: $i) ' ..
    '{ points transfer { id } errors { code } } }", "variables": {"i": {"member": ' ..
    '{"phone": "' .. pick(PHONES) .. '"}, "amount": "' .. math.random(100, 5000) .. '.50", ' ..
    '"reference": "r-' .. next_key() .. '", "idempotencyKey": "k-' .. next_key() .. '"}}}'
  return gql(token, body)
end
