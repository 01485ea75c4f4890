"""The ASGI entry point uvicorn workers import (`api.main:app`)."""

import gc
import logging

from api.app import create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
app = create_app()

# GraphQL execution allocates many short-lived objects: with the default thresholds the
# cyclic collector ran every few requests, rescanning the long-lived schema and modules.
# Freeze what start-up built and collect the young generation less often.
gc.collect()
gc.freeze()
gc.set_threshold(50_000, 20, 20)
