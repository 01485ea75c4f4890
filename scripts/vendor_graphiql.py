"""Refresh the GraphiQL assets vendored under api/static/graphiql/ from the npm registry.

    .venv/bin/python scripts/vendor_graphiql.py

The packages and versions are pinned in api/graphiql.py (PACKAGES); change a version there,
run this, and commit what it wrote. Each package is fetched with `npm pack` (npm checks the
tarball against the registry's integrity hash), and only the files the page loads are kept,
byte for byte, beside the package's LICENSE. A package published without a LICENSE gets the
licences of the packages named in its `license_from`. Directories of versions no longer
pinned are removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.graphiql import GRAPHIQL_DIR, PACKAGES  # noqa: E402

LICENSE_NAMES = ("package/LICENSE", "package/LICENSE.md", "package/LICENSE.txt", "package/license")


def npm_pack(spec: str, into: Path) -> Path:
    """The published tarball of `spec` (name@version), downloaded by npm into `into`."""
    done = subprocess.run(
        ["npm", "pack", spec, "--json", "--pack-destination", str(into)],
        check=True,
        capture_output=True,
        text=True,
    )
    [packed] = json.loads(done.stdout)
    filename: str = packed["filename"]
    return into / filename


def member(tarball: Path, names: tuple[str, ...]) -> bytes | None:
    """The first of `names` found in the tarball (read, never extracted to disk)."""
    with tarfile.open(tarball, "r:gz") as archive:
        present = set(archive.getnames())
        for name in names:
            if name in present:
                extracted = archive.extractfile(name)
                assert extracted is not None, name
                return extracted.read()
    return None


def main() -> None:
    GRAPHIQL_DIR.mkdir(parents=True, exist_ok=True)
    wanted = {package.directory for package in PACKAGES}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for package in PACKAGES:
            spec = f"{package.name}@{package.version}"
            tarball = npm_pack(spec, work)
            target = GRAPHIQL_DIR / package.directory
            if target.exists():
                shutil.rmtree(target)
            target.mkdir()
            for inside, name in package.files.items():
                content = member(tarball, (f"package/{inside}",))
                if content is None:
                    raise SystemExit(f"{spec} has no {inside}")
                (target / name).write_bytes(content)
                digest = hashlib.sha256(content).hexdigest()[:16]
                print(f"{spec}: {inside} -> {target.relative_to(ROOT)}/{name} ({digest})")
            licence = member(tarball, LICENSE_NAMES)
            if licence is None:
                if not package.license_from:
                    raise SystemExit(f"{spec} ships no LICENSE: name where its licence is")
                parts = [
                    f"{spec} is published without a LICENSE file. Its package.json says MIT;"
                    " these are the licences of the packages it comes from and bundles.\n"
                ]
                for source in package.license_from:
                    text = member(npm_pack(source, work), LICENSE_NAMES)
                    if text is None:
                        raise SystemExit(f"{source} ships no LICENSE either")
                    parts.append(f"---- {source} ----\n\n{text.decode()}")
                licence = "\n".join(parts).encode()
            (target / "LICENSE").write_bytes(licence)
    for stale in GRAPHIQL_DIR.iterdir():
        if stale.is_dir() and "@" in stale.name and stale.name not in wanted:
            shutil.rmtree(stale)
            print(f"removed {stale.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
