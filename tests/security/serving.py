"""An app of a test's own, served over real HTTP, with a clock the test moves by hand."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette


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
    """Serve `app` with uvicorn on a free port in a thread; yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20  # only to fail instead of hanging
    while not instance.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=10)
