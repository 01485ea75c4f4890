"""The ASGI entry point uvicorn workers import (`api.main:app`)."""

import gc
import logging

from api.app import create_app
from api.logs import configure_logging
from api.settings import load_settings

settings = load_settings()
# `coalition serve` has set the log format up already (api/http_server.py); served another
# way (`uvicorn api.main:app`), the same format: JSON lines in production, text otherwise.
if not logging.getLogger().handlers:
    configure_logging(production=settings.production)
app = create_app(settings=settings)

# GraphQL execution allocates many short-lived objects: with the default thresholds the
# cyclic collector ran every few requests, rescanning the long-lived schema and modules.
# Freeze what start-up built and collect the young generation less often.
gc.collect()
gc.freeze()
gc.set_threshold(50_000, 20, 20)
