"""GraphiQL, served by the platform itself: the page, its script, and the vendored assets.

Strawberry's own page loads React, GraphiQL and the explorer plugin from a CDN, so it never
works offline or behind a firewall. The same published files are vendored under
api/static/graphiql/ (with their licences; `scripts/vendor_graphiql.py` refreshes them from
the npm registry) and served from /static/graphiql/, and the page links nothing else: a
Content-Security-Policy keeps the browser on this origin.

The page needs no token; the API does. The headers editor opens with a hint
(`{"Authorization": "Bearer ..."}`); once a token is pasted there, GraphiQL fetches the
schema again with it (introspection), so the docs and completion work from then on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from string import Template

from starlette.responses import HTMLResponse

STATIC_DIR = Path(__file__).with_name("static")
GRAPHIQL_DIR = STATIC_DIR / "graphiql"
STATIC_PREFIX = "/static"
_TEMPLATE = Path(__file__).with_name("templates") / "graphiql.html"

# Everything the page may load comes from here; inline styles are GraphiQL's own (React sets
# style attributes), and its fonts are data: URLs inside its stylesheet.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


@dataclass(frozen=True)
class Package:
    """An npm package whose published files are vendored as they are."""

    name: str
    version: str
    # path inside the package's tarball -> file name under its directory here
    files: dict[str, str]
    # Packages (name@version) whose LICENSE covers this one when it ships none itself: the
    # explorer plugin is published without one (MIT, from the GraphiQL monorepo, and it
    # bundles graphiql-explorer, MIT).
    license_from: tuple[str, ...] = field(default=())

    @property
    def directory(self) -> str:
        """`@graphiql/plugin-explorer` 1.0.2 -> `graphiql-plugin-explorer@1.0.2`."""
        return f"{self.name.lstrip('@').replace('/', '-')}@{self.version}"

    def url(self, file: str) -> str:
        return f"{STATIC_PREFIX}/graphiql/{self.directory}/{self.files[file]}"


# The versions Strawberry 0.341's GraphiQL page uses (it also loads js-cookie, for Django's
# CSRF cookie, which this API has no use for).
REACT = Package("react", "18.2.0", {"umd/react.production.min.js": "react.production.min.js"})
REACT_DOM = Package(
    "react-dom", "18.2.0", {"umd/react-dom.production.min.js": "react-dom.production.min.js"}
)
GRAPHIQL = Package(
    "graphiql",
    "3.8.3",
    {"graphiql.min.js": "graphiql.min.js", "graphiql.min.css": "graphiql.min.css"},
)
EXPLORER = Package(
    "@graphiql/plugin-explorer",
    "1.0.2",
    {"dist/index.umd.js": "index.umd.js", "dist/style.css": "style.css"},
    license_from=("graphiql@3.8.3", "graphiql-explorer@0.9.0"),
)
PACKAGES = (REACT, REACT_DOM, GRAPHIQL, EXPLORER)


def ide_page(endpoint: str = "/graphql") -> HTMLResponse:
    """The GraphiQL page: only this origin's assets, the endpoint given to the script."""
    return HTMLResponse(
        _page(endpoint),
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@functools.cache
def _page(endpoint: str) -> str:
    return Template(_TEMPLATE.read_text(encoding="utf-8")).substitute(
        endpoint=escape(endpoint),
        graphiql_css=GRAPHIQL.url("graphiql.min.css"),
        explorer_css=EXPLORER.url("dist/style.css"),
        react=REACT.url("umd/react.production.min.js"),
        react_dom=REACT_DOM.url("umd/react-dom.production.min.js"),
        graphiql=GRAPHIQL.url("graphiql.min.js"),
        explorer=EXPLORER.url("dist/index.umd.js"),
        ide=f"{STATIC_PREFIX}/graphiql/ide.js",
    )
