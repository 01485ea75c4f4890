"""The token signing key: from COALITION_SIGNING_KEY (PEM), or generated once in the data dir."""

from __future__ import annotations

import os
from pathlib import Path

from joserfc.jwk import ECKey

KEY_FILE = "signing-key.pem"


def load_signing_key(data_dir: Path) -> ECKey:
    pem = os.environ.get("COALITION_SIGNING_KEY")
    if pem:
        return _with_kid(ECKey.import_key(pem))
    path = data_dir / KEY_FILE
    if not path.exists():
        key = ECKey.generate_key("P-256", private=True)
        data = key.as_pem(private=True)
        # O_EXCL: when several workers start at once, exactly one writes the key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
    for _ in range(50):
        data = path.read_bytes()
        if data.strip().endswith(b"-----"):
            break
        import time

        time.sleep(0.05)  # another worker is still writing it
    return _with_kid(ECKey.import_key(data))


def _with_kid(key: ECKey) -> ECKey:
    key.ensure_kid()
    return key
