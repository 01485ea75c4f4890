"""The writes of the points currency made in Python, one module per posting type. The earn
has no Python copy: one at a time it is the SQL function `ledger_book_earn` (`earn_sql`), in
batches the set-based `bulk`. The redemption has no Python copy either: `redeemPoints` and a
hold's capture (`holds.capture`) both book through the SQL function `ledger_book_redeem`
(`redeem_sql`). Nothing outside the ledger inserts transfers or changes lots.

Each posting runs in the caller's transaction and starts by locking the member's row
(`FOR NO KEY UPDATE`, which does not conflict with the KEY SHARE locks that foreign keys
take), so one member's balance changes one at a time while members and partners proceed in
parallel. No partner- or operator-level row is updated: their totals are derived.
"""

from ledger.postings.adjustment import adjust, credit_member, debit_member
from ledger.postings.base import Posting, TransferCode, consume, posting, spendable, wallet
from ledger.postings.expiry import expire_member
from ledger.postings.holds import capture, hold, void
from ledger.postings.reverse import OriginalTransfer, reversal_points, reverse

__all__ = [
    "OriginalTransfer",
    "Posting",
    "TransferCode",
    "adjust",
    "capture",
    "consume",
    "credit_member",
    "debit_member",
    "expire_member",
    "hold",
    "posting",
    "reversal_points",
    "reverse",
    "spendable",
    "void",
    "wallet",
]
