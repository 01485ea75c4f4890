"""Every table of the platform, for Alembic and the drift test (imported only by entry points)."""

from sqlalchemy import MetaData
from sqlmodel import SQLModel


def load_all_models() -> MetaData:
    import db.audit  # noqa: F401
    import settlement.models  # noqa: F401

    return SQLModel.metadata
