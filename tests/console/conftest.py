"""The operator console's tests: staff accounts made for each test, and a signed-in tab."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest
from playwright.async_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from console.staff import create_staff
from tests.browser.conftest import BrowserLog, chromium, page  # noqa: F401  (fixtures)


@dataclass(frozen=True)
class StaffLogin:
    email: str
    password: str
    role: str


async def make_staff(engine: AsyncEngine, role: str) -> StaffLogin:
    email = f"{role}-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(16)
    async with engine.begin() as conn:
        await create_staff(conn, email=email, role=role, password=password, actor="test")
    return StaffLogin(email, password, role)


async def sign_in(tab: Page, base: str, who: StaffLogin, password: str | None = None) -> None:
    await tab.goto(f"{base}/console")
    await expect(tab.get_by_role("heading", name="Sign in")).to_be_visible()
    await tab.get_by_label("Email").fill(who.email)
    await tab.get_by_label("Password").fill(password or who.password)
    await tab.get_by_role("button", name="Sign in").click()


@pytest.fixture
async def admin(engine: AsyncEngine) -> StaffLogin:
    return await make_staff(engine, "admin")


Tab = tuple[Page, BrowserLog]
