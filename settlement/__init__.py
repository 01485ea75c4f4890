"""Settlement: obligations booked with the transfers that cause them, periods, statements,
reconciliation and the internal proof. Its subscription to ledger postings lives in the
database (migration 0004, see `settlement.booking`)."""
