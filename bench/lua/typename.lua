dofile(os.getenv("BENCH_LUA") .. "/common.lua")
function request()
  return gql(pick(TOKENS), '{"query": "{ __typename }"}')
end
