"""Settlement: obligations booked with the transfers that cause them, periods, statements,
reconciliation and the internal proof. Importing the package subscribes it to ledger events."""

from settlement.booking import register

register()
