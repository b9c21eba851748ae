"""Debian's Chromium driven by Playwright against the real stack (provider + agent on loopback).

Chromium is ``/usr/bin/chromium`` (never a downloaded browser), headless, with a fresh profile
under the test's ``tmp_path``. Locally the tests skip only when that binary is missing; with
``CI`` set they fail instead, and a browser that is installed but cannot start always fails.
Screenshots of every page go to ``tmp_path / "screenshots"``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, Playwright, async_playwright

from tests.needs import unavailable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
LAPTOP = {"width": 1366, "height": 768}


@pytest.fixture
async def pw() -> AsyncIterator[Playwright]:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    async with async_playwright() as p:
        yield p


class Chromium:
    """Opens fresh-profile browser contexts and records what they show."""

    def __init__(self, playwright: Playwright, tmp_path: Path) -> None:
        self.playwright = playwright
        self.tmp_path = tmp_path
        self.shots = tmp_path / "screenshots"
        self.shots.mkdir()
        self.contexts: list[BrowserContext] = []

    async def context(self, name: str = "profile", **options: Any) -> BrowserContext:
        """A persistent context on a new, empty user data dir (the provider's CA is throwaway)."""
        settings: dict[str, Any] = {"viewport": LAPTOP, "ignore_https_errors": True,
                                    "locale": "en-US"}
        settings.update(options)
        try:
            context = await self.playwright.chromium.launch_persistent_context(
                str(self.tmp_path / name), executable_path=str(CHROMIUM), headless=True,
                args=CHROMIUM_ARGS, **settings)
        except Exception as exc:  # noqa: BLE001 - reported as the failure it is
            pytest.fail(f"Chromium at {CHROMIUM} did not start: {exc}")
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        return context

    async def page(self, name: str = "profile", **options: Any) -> Page:
        context = await self.context(name, **options)
        return context.pages[0] if context.pages else await context.new_page()

    async def screenshot(self, page: Page, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest.fixture
async def chromium(pw: Playwright, tmp_path: Path) -> AsyncIterator[Chromium]:
    browser = Chromium(pw, tmp_path)
    try:
        yield browser
    finally:
        await browser.close()


@pytest.fixture
def axe_source() -> Path:
    if not AXE.exists():
        unavailable(f"{AXE} is missing: run 'npm ci' in the repository")
    return AXE


# Rules the issue names: labels, colour contrast and keyboard use. axe runs all its WCAG A/AA
# and best-practice rules; these must have actually run (passed) where the page has content
# they apply to.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


async def axe_check(page: Page, source: Path) -> dict[str, Any]:
    """Inject axe-core (the context bypasses CSP for this) and return its results."""
    await page.add_script_tag(path=str(source))
    options = json.dumps({"runOnly": {"type": "tag", "values": AXE_TAGS},
                          "resultTypes": ["violations", "passes"]})
    results: dict[str, Any] = await page.evaluate(f"axe.run(document, {options})")
    return results


def violations(results: dict[str, Any]) -> list[str]:
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])}x: "
            f"{'; '.join(n['failureSummary'] for n in v['nodes'][:2])})"
            for v in results["violations"]]


def passed(results: dict[str, Any]) -> set[str]:
    return {p["id"] for p in results["passes"]}
