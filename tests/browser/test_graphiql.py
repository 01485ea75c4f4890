"""GraphiQL in a real browser: the page loads everything from the platform itself (no CDN),
the editor renders, and once a real OAuth token is pasted in the headers editor the schema
loads (introspection) and a query runs, its answer shown in the page."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator

import httpx
import pytest
from playwright.async_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.browser.conftest import HANG, BrowserLog
from tests.conftest import make_client, make_partner, serving

EDITOR = ".graphiql-query-editor .CodeMirror"
HEADERS_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
RESULT = "section.result-window"


@pytest.fixture(scope="module")
def dev(database_url: str, server: str) -> Iterator[str]:
    """A development server of this module's own (GraphiQL is off in production, and the
    session's server follows COALITION_ENV)."""
    from api.app import create_app
    from api.settings import load_settings

    assert os.environ.get("COALITION_DATA_DIR")  # set by the `server` fixture
    settings = dataclasses.replace(load_settings(), environment="development")
    with serving(create_app(database_url, settings=settings, run_expiry=False), settings) as url:
        yield url


@pytest.fixture
async def client(engine: AsyncEngine, dev: str) -> tuple[str, str]:
    partner = await make_partner(engine)
    return await make_client(engine, partner.id, ["members:read"])


def _token(base: str, client: tuple[str, str]) -> str:
    response = httpx.post(
        f"{base}/oauth/token", data={"grant_type": "client_credentials"}, auth=client, timeout=HANG
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def _replace_text(page: Page, editor: str, text: str) -> None:
    """What a user does: click into the editor, select all, paste."""
    await page.locator(editor).click()
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text(text)


def _is_introspection(body: str | None) -> bool:
    with contextlib.suppress(ValueError, TypeError):
        return "__schema" in json.loads(body or "")["query"]
    return False


async def test_graphiql_runs_a_query_with_a_pasted_token_and_never_leaves_the_origin(
    dev: str, client: tuple[str, str], page: tuple[Page, BrowserLog]
) -> None:
    tab, log = page
    await tab.goto(f"{dev}/graphql")
    await expect(tab.locator(EDITOR)).to_be_visible()
    # The headers editor is open, with the hint of what to paste.
    await expect(tab.locator(HEADERS_EDITOR)).to_contain_text('"Authorization": "Bearer <paste')

    token = _token(dev, client)
    bearer = f"Bearer {token}"
    # Pasting a token makes GraphiQL fetch the schema again, with it.
    async with tab.expect_response(
        lambda r: (
            r.request.headers.get("authorization") == bearer
            and _is_introspection(r.request.post_data)
        )
    ) as introspection:
        await _replace_text(tab, HEADERS_EDITOR, json.dumps({"Authorization": bearer}))
    answered = await introspection.value
    assert answered.status == 200
    assert (await answered.json())["data"]["__schema"]["queryType"]["name"] == "Query"

    await _replace_text(tab, EDITOR, "{ viewer { clientId } }")
    async with tab.expect_response(
        lambda r: (
            r.request.headers.get("authorization") == bearer
            and "viewer" in (r.request.post_data or "")
        )
    ) as query:
        await tab.get_by_label("Execute query (Ctrl-Enter)").click()
    assert (await query.value).status == 200
    await expect(tab.locator(RESULT)).to_contain_text(f'"clientId": "{client[0]}"')

    # Every request the page made went to this server: the page, its assets, the API.
    assert log.off_origin(dev) == [], log.off_origin(dev)
    assert any("/static/graphiql/graphiql@" in url for url in log.requests), log.requests
    assert any("/static/graphiql/react@" in url for url in log.requests), log.requests
    # Nothing was blocked by the page's Content-Security-Policy, and no script failed.
    assert not [m for m in log.console if "Content Security Policy" in m], log.console
    assert log.errors == []
