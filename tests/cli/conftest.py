"""Data directories of the CLI tests' own embedded PostgreSQL clusters, stopped afterwards."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.embedded import stop_embedded


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A fresh COALITION_DATA_DIR whose cluster (`pg/`, started by the commands under test)
    is stopped when the test ends, passed or failed, so no PostgreSQL outlives the suite.
    Outside pytest's temporary directory: as root, PostgreSQL runs as the `pgserver` user,
    which must traverse the path, and every pytest session that starts meanwhile makes
    /tmp/pytest-of-root private again."""
    path = Path(tempfile.mkdtemp(prefix="coalition-cli-"))
    try:
        yield path / "data"
    finally:
        stop_embedded(path / "data" / "pg")
        shutil.rmtree(path, ignore_errors=True)
