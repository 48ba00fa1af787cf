"""The live admin page in a real headless Chromium, after real traffic with a fault: the
endpoint is ejected, its charts are drawn from ``/history``, and the ejection is on the
timeline and in the list of events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.observability.chromium import Chromium, Page
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


def visible(selector_js: str) -> str:
    """JavaScript: the element exists, is rendered, and has an area on the page."""
    return (
        f"(() => {{ const e = {selector_js}; if (!e) return false; const r = "
        "e.getBoundingClientRect(); return e.checkVisibility() && r.width > 0 && r.height > 0; })()"
    )


async def points(page: Page, selector_js: str) -> int:
    return int(await page.evaluate(f"{selector_js}?.dataset.points ?? '0'"))


async def test_page_charts_an_endpoint_getting_ejected_and_puts_it_on_the_timeline(
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
                    "discovery": {
                        "static": [
                            {"address": "127.0.0.1", "port": bad.port, "name": "bad-one"},
                            {"address": "127.0.0.1", "port": good.port, "name": "good-one"},
                        ]
                    },
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

    # Real traffic, healthy first, then with one endpoint answering 500 until it is ejected;
    # the history is sampled after each (its task does so every 5 s on its own).
    sent = 0
    for _ in range(10):
        async with client.get(url(sc, "upstream:api", "/")) as r:
            assert r.status == 200
        sent += 1
    sc.history.sample()
    bad.behaviour = broken
    cluster = sc.clusters["api"]
    assert cluster.outlier is not None
    while not cluster.outlier.is_ejected(bad.address):
        assert sent < 40, "the failing endpoint was never ejected"
        async with client.get(url(sc, "upstream:api", "/")) as r:
            await r.read()
        sent += 1
    sc.history.sample()
    async with client.get(url(sc, "admin", "/history")) as r:
        history = await r.json()
    (api,) = history["clusters"]
    by_id = {e["id"]: e for e in api["endpoints"]}
    assert by_id[bad.address]["state"][-1] == "ejected"
    assert by_id[bad.address]["error_rate"][-1] > 0
    assert by_id[good.address]["error_rate"][-1] == 0

    page = await browser.open(url(sc, "admin", "/"))
    try:
        condition = f"{row(bad.address)}?.dataset.state === 'ejected'"
        assert await page.wait_until(condition, timeout=10) is True
        cells = await page.evaluate(f"Array.from({row(bad.address)}.cells).map(c => c.textContent)")
        assert cells[:3] == ["bad-one", bad.address, "ejected"]
        assert cells[5] == "1"  # times ejected
        assert await page.evaluate(f"{row(good.address)}.dataset.state") == "available"

        # The endpoint's charts: each drawn with a point per sample, a line through them.
        chart = f"{row(bad.address)}.querySelector('svg[data-chart=\"error_rate\"]')"
        assert await page.wait_until(f"Number({chart}?.dataset.points) >= 2", timeout=10)
        assert await page.evaluate(visible(chart)) is True
        assert await page.evaluate(f"{chart}.querySelectorAll('polyline').length") >= 1
        for name in ("rps", "p99_ms"):
            assert await points(
                page, row(bad.address) + f".querySelector('svg[data-chart={name}]')"
            )
        # The ejection marks the endpoint's chart, and the cluster's larger ones.
        mark = f"{chart}.querySelector('line[data-kind=\"endpoint_ejected\"]')"
        assert await page.evaluate(f"!!{mark}") is True
        cluster_chart = (
            'document.querySelector(\'section[data-cluster="api"] .charts svg[data-chart="rps"]\')'
        )
        assert await points(page, cluster_chart) >= 2
        assert await page.evaluate(visible(cluster_chart)) is True

        # The timeline: the ejection in its lane, and in the list with the endpoint's name.
        dot = (
            'document.querySelector(\'#lanes g[data-lane="ejections"] '
            'circle[data-kind="endpoint_ejected"]\')'
        )
        assert await page.wait_until(f"!!{dot}", timeout=10) is True
        assert await page.evaluate(visible(dot)) is True
        item = "document.querySelector('#events li[data-kind=\"endpoint_ejected\"]')"
        text = await page.evaluate(f"{item}.textContent")
        assert f"endpoint bad-one ({bad.address}) of api ejected: consecutive_5xx" in text
        assert await page.evaluate(visible(item)) is True

        # Every request total counted, maybe one poll later.
        total = "document.querySelector('tr[data-listener=\"upstream:api\"]')?.cells[5].textContent"
        assert await page.wait_until(f"{total} === '{sent}'", timeout=10) is True
        # Nothing was fetched from anywhere but the admin listener.
        admin = url(sc, "admin", "/")
        fetched = await page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        assert fetched and all(name.startswith(admin) for name in fetched), fetched

        shot = await page.screenshot(tmp_path / "admin-page.png")
        assert shot.startswith(b"\x89PNG\r\n\x1a\n") and len(shot) > 1000
    finally:
        await page.close()
