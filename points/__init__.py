"""The points use cases: earn, redeem, hold, capture, void, reverse (`service`) and the batch
earn (`batch`), from a caller's request to the ledger's postings."""
