"""Expected failures of domain operations: data for the API, never a 500."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_INPUT = "INVALID_INPUT"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    INVALID_PHONE = "INVALID_PHONE"
    INVALID_CURSOR = "INVALID_CURSOR"
    MEMBER_NOT_FOUND = "MEMBER_NOT_FOUND"
    PARTNER_NOT_FOUND = "PARTNER_NOT_FOUND"
    TRANSFER_NOT_FOUND = "TRANSFER_NOT_FOUND"
    HOLD_NOT_FOUND = "HOLD_NOT_FOUND"
    HOLD_NOT_ACTIVE = "HOLD_NOT_ACTIVE"
    INSUFFICIENT_POINTS = "INSUFFICIENT_POINTS"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    ALREADY_REVERSED = "ALREADY_REVERSED"
    NOT_REVERSIBLE = "NOT_REVERSIBLE"
    REDEMPTION_NOT_ACCEPTED = "REDEMPTION_NOT_ACCEPTED"
    PARTNER_REF_TAKEN = "PARTNER_REF_TAKEN"
    SLUG_TAKEN = "SLUG_TAKEN"
    INVALID_SCOPE = "INVALID_SCOPE"
    CLIENT_NOT_FOUND = "CLIENT_NOT_FOUND"
    PERIOD_NOT_FOUND = "PERIOD_NOT_FOUND"
    INVALID_CUTOFF = "INVALID_CUTOFF"
    INSTRUCTION_NOT_FOUND = "INSTRUCTION_NOT_FOUND"
    ALREADY_PAID = "ALREADY_PAID"
    REPORT_INVALID = "REPORT_INVALID"
    BREAK_NOT_FOUND = "BREAK_NOT_FOUND"
    BREAK_ALREADY_RESOLVED = "BREAK_ALREADY_RESOLVED"


class DomainError(Exception):
    """An expected failure with a machine-readable code and the input field it concerns."""

    def __init__(self, code: ErrorCode, message: str, field: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
