"""The live admin page in a real headless Chromium: it follows an endpoint being ejected."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.observability.chromium import Chromium
from tests.sidecar.harness import config_yaml, url


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Chromium]:
    chromium = Chromium(tmp_path / "profile")
    try:
        yield await chromium.start()
    finally:
        await chromium.stop()


def row(endpoint: str) -> str:
    return f"document.querySelector('tr[data-endpoint={json.dumps(endpoint)}]')"


async def test_page_shows_an_endpoint_getting_ejected(
    backends, sidecar_factory, client, browser, tmp_path
):
    bad, good = await backends(2)

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500)

    sc = await sidecar_factory(
        config_yaml(
            [
                {
                    "name": "api",
                    "discovery": {"static": [bad.address, good.address]},
                    "retries": {"attempts": 0},
                    "outlier_detection": {"consecutive_5xx": 3, "base_ejection_time": "60s"},
                }
            ]
        )
    )
    async with client.get(url(sc, "admin", "/")) as r:
        assert r.status == 200
        assert r.content_type == "text/html"
        html = await r.text()
    assert "<script src" not in html and "<link" not in html  # self-contained

    page = await browser.open(url(sc, "admin", "/"))
    try:
        state = await page.wait_until(f"{row(bad.address)}?.dataset.state", timeout=10)
        assert state == "available"

        bad.behaviour = broken
        cluster = sc.clusters["api"]
        assert cluster.outlier is not None
        sent = 0
        while not cluster.outlier.is_ejected(bad.address):
            assert sent < 20, "the failing endpoint was never ejected"
            async with client.get(url(sc, "upstream:api", "/")) as r:
                await r.read()
            sent += 1

        condition = f"{row(bad.address)}?.dataset.state === 'ejected'"
        assert await page.wait_until(condition, timeout=10) is True
        cells = await page.evaluate(f"Array.from({row(bad.address)}.cells).map(c => c.textContent)")
        assert cells[0] == bad.address
        assert cells[1] == "ejected"
        assert cells[4] == "1"  # times ejected
        assert await page.evaluate(f"{row(good.address)}.dataset.state") == "available"
        # The last request is counted when its answer is written, maybe one poll later.
        total = "document.querySelector('tr[data-listener=\"upstream:api\"]')?.cells[5].textContent"
        assert await page.wait_until(f"{total} === '{sent}'", timeout=10) is True
        assert await page.evaluate(
            "document.querySelector('section[data-cluster=\"api\"] h2')"
            ".textContent.startsWith('api')"
        )

        shot = await page.screenshot(tmp_path / "admin-page.png")
        assert shot.startswith(b"\x89PNG\r\n\x1a\n") and len(shot) > 1000
    finally:
        await page.close()
