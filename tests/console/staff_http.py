"""A staff member signed in to the console over real HTTP (no browser): the sign-in form with
its double-submitted token, the session cookie, and the session's CSRF token for POSTs."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx

from tests.console.conftest import StaffLogin

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class StaffHttp:
    def __init__(self, server: str, who: StaffLogin) -> None:
        self.who = who
        self.http = httpx.Client(base_url=server, timeout=30)
        form = self.http.get("/console/sign-in")
        token = _CSRF.search(form.text)
        assert token, form.text
        signed = self.http.post(
            "/console/sign-in",
            data={"csrf": token.group(1), "email": who.email, "password": who.password},
        )
        assert signed.status_code == 303, signed.text
        home = self.http.get("/console/")
        assert home.status_code == 200, home.text
        found = _CSRF.search(home.text)
        assert found
        self.csrf = found.group(1)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(f"/console{path}", params=params or None)

    def post(self, path: str, data: dict[str, Any], **headers: str) -> httpx.Response:
        return self.http.post(f"/console{path}", data={"csrf": self.csrf, **data}, headers=headers)


def field_value(page: str, name: str) -> str:
    """The value attribute of the input called `name` on the page."""
    found = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', page)
    assert found, name
    return html.unescape(found.group(1))
