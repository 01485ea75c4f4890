"""GraphQL of the coalition's tiers: the policy (query and mutation), and the types and loaders
behind `Member.tier` and `Member.tierProgress`."""
