"""An app of a test's own, served over real HTTP, with a clock the test moves by hand."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette

from tests.conftest import serving


class ManualClock:
    """Seconds that pass only when the test says so: rate-limit figures become exact."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limited_app(database_url: str, clock: ManualClock, **settings: Any) -> Starlette:
    """The app with `settings` changed and its query-cost limiter on `clock`. The session's
    `server` fixture must have run (it sets the data directory, so tokens verify)."""
    from api.app import create_app
    from api.settings import load_settings

    assert os.environ.get("COALITION_DATA_DIR")
    app = create_app(
        database_url,
        settings=dataclasses.replace(load_settings(), **settings),
        run_expiry=False,
    )
    app.state.platform.cost_limiter.clock = clock
    return app


@contextlib.contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Serve `app` as `coalition serve` does, with its own settings; yields its base URL."""
    with serving(app, app.state.platform.settings) as url:
        yield url
