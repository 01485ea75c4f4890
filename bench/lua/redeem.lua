dofile(os.getenv("BENCH_LUA") .. "/common.lua")
function request()
  local body = '{"query": "mutation($i: RedeemPointsInput!) { redeemPoints(input: $i) ' ..
    '{ points errors { code } } }", "variables": {"i": {"member": {"phone": "' ..
    pick(PHONES) .. '"}, "points": ' .. math.random(1, 5) .. ', "reference": "o-' ..
    next_key() .. '", "idempotencyKey": "b-' .. next_key() .. '"}}}'
  return gql(pick(TOKENS), body)
end
