"""Every write of the points currency, in Python, one module per posting type. The ledger's other writers follow the same
rules: `bulk` (set-based earns) and the single earn and redemption as SQL functions
(`earn_sql`, `redeem_sql`); nothing outside the ledger inserts transfers or changes lots.

Each posting runs in the caller's transaction and starts by locking the member's row
(`FOR NO KEY UPDATE`, which does not conflict with the KEY SHARE locks that foreign keys
take), so one member's balance changes one at a time while members and partners proceed in
parallel. No partner- or operator-level row is updated: their totals are derived.
"""

from ledger.postings.adjustment import adjust
from ledger.postings.base import Posting, TransferCode, consume, posting, spendable, wallet
from ledger.postings.earn import book_earn
from ledger.postings.expiry import expire_member
from ledger.postings.holds import capture, hold, void
from ledger.postings.redeem import redeem
from ledger.postings.reverse import OriginalTransfer, reverse

__all__ = [
    "OriginalTransfer",
    "Posting",
    "TransferCode",
    "adjust",
    "book_earn",
    "capture",
    "consume",
    "expire_member",
    "hold",
    "posting",
    "redeem",
    "reverse",
    "spendable",
    "void",
    "wallet",
]
