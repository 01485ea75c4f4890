"""Guards for client authentication at the OAuth endpoints (token, introspection, revocation).

- `AuthThrottle` counts failed authentications per client id (from one address) and per
  remote address. After
  `limit` failures within `window` seconds of the first one, the key is refused (429) until
  that window ends, *before* the database or Argon2 is touched, so a throttled flood costs no
  CPU, and a right secret is refused too, so guessing cannot go on. Successes are never
  counted: any number of honest clients behind one address is never throttled. A client id
  is counted per address, not globally: client ids are not secret, so a global count would
  let a stranger lock a partner's tills out with ten bad requests a minute; secrets are 256
  random bits, so guessing spread over many addresses gains nothing, while each address is
  still held to its own limit.
- `VerifierPool` runs Argon2 in a few dedicated threads behind a bounded waiting line. When
  the line is full the request is answered at once (503) instead of piling up behind a flood,
  so the rest of the API (earns never use Argon2) keeps its CPU and its latency.

State lives in each worker process (N workers give an attacker N × the limits) and is bounded
(`max_keys` per map, least recently failed forgotten first).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from partners.clients import ClientRecord, verify_secret

# Keys longer than this are stored as a digest: a 1 MiB "client id" must not cost 1 MiB.
MAX_KEY_CHARS = 100


def client_key(client_id: str) -> str:
    if len(client_id) <= MAX_KEY_CHARS:
        return client_id
    return "#" + hashlib.blake2b(client_id.encode(), digest_size=16).hexdigest()


def address_key(host: str | None) -> str | None:
    """The unit an attacker pays for: an IPv4 address, or an IPv6 /64 (one host usually
    holds a whole /64, so keying single IPv6 addresses would be no limit at all)."""
    if not host:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return client_key(host)  # not an IP (a test client, a unix socket peer): as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FailureCounter:
    """Failures per key in a fixed window that starts at the key's first failure."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float], max_keys: int
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        # key -> (failures, window start); ordered from least to most recently failed.
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.limit > 0 and self.window > 0

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until `key` may try again; None when it may try now."""
        if not self.enabled or key not in self._failures:
            return None
        failures, start = self._failures[key]
        remaining = start + self.window - now
        if failures < self.limit or remaining <= 0:
            return None
        return remaining

    def fail(self, key: str, now: float) -> None:
        if not self.enabled:
            return
        failures, start = self._failures.pop(key, (0, now))
        if now - start >= self.window:
            failures, start = 0, now  # the old window is over: a new one starts here
        self._failures[key] = (failures + 1, start)
        self._forget(now)

    def _forget(self, now: float) -> None:
        # Expired windows at the old end go first; then, at the bound, the least recently
        # failed key. Pushing a locked key out takes `max_keys` fresh failures, each of which
        # had to pass this throttle and an Argon2 verification: dearer than waiting it out.
        while self._failures:
            key, (_, start) = next(iter(self._failures.items()))
            if now - start < self.window and len(self._failures) <= self.max_keys:
                break
            del self._failures[key]


def _pair(client_id: str, address: str | None) -> str:
    return client_key(f"{client_id}\x00{address or ''}")


class AuthThrottle:
    """Failed client authentications per (client id, address) and per remote address."""

    def __init__(
        self,
        *,
        client_failures: int,
        address_failures: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.clock = clock
        self.clients = FailureCounter(client_failures, window, clock, max_keys)
        self.addresses = FailureCounter(address_failures, window, clock, max_keys)

    def retry_after(self, client_id: str | None, address: str | None) -> int | None:
        """Whole seconds to wait (for Retry-After) when either key is locked out, else None.

        Never awaits, so on the event loop a check and its `failed` cannot interleave with
        another request's (requests already past the check still finish: at most the
        verifier pool's capacity over the limit)."""
        now = self.clock()
        waits = [
            self.clients.retry_after(_pair(client_id, address), now) if client_id else None,
            self.addresses.retry_after(address, now) if address else None,
        ]
        longest = max((w for w in waits if w is not None), default=None)
        return None if longest is None else max(1, math.ceil(longest))

    def failed(self, client_id: str | None, address: str | None) -> None:
        now = self.clock()
        if client_id:
            self.clients.fail(_pair(client_id, address), now)
        if address:
            self.addresses.fail(address, now)


class PoolBusy(Exception):
    """Every verification thread is busy and the waiting line is full."""


Verify = Callable[[ClientRecord | None, str], bool]


def _verify_secret(record: ClientRecord | None, secret: str) -> bool:
    return verify_secret(record, secret)


class VerifierPool:
    """Argon2 verifications in `workers` threads, at most `queue` more waiting.

    Each verification is ~0.1-0.2 s of one core and 64 MiB at the default parameters, so the
    threads bound both CPU and memory; the admission count bounds the waiting line.
    """

    def __init__(self, workers: int, queue: int, verify: Verify = _verify_secret) -> None:
        self.workers = max(1, workers)
        self.capacity = self.workers + max(0, queue)
        self.admitted = 0  # running + waiting; changed only on the event loop
        self._verify = verify
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="argon2")

    async def verify(self, record: ClientRecord | None, secret: str) -> bool:
        if self.admitted >= self.capacity:
            raise PoolBusy
        self.admitted += 1
        try:
            loop = asyncio.get_running_loop()
            # A cancelled request cancels its verification if it has not started yet.
            return await loop.run_in_executor(self._executor, self._verify, record, secret)
        finally:
            self.admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
