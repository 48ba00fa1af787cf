"""Headless Chromium driven over the DevTools protocol with aiohttp's websocket client.

Enough of CDP for page tests: open a page, evaluate JavaScript (awaiting promises), take
a screenshot. Chromium must be installed (Debian package ``chromium``); a missing browser
fails the test under CI and skips it elsewhere (``tests/system_tools.py``). Every step is
bounded in time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
from pathlib import Path
from typing import Any

import aiohttp

from tests.system_tools import require

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--remote-debugging-port=0",
)
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


def chromium_binary() -> str:
    return require("chromium")


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
            else:
                future = self._events.pop(data.get("method", ""), None)
            if future is not None and not future.done():
                future.set_result(data)
        for future in [*self._waiting.values(), *self._events.values()]:
            if not future.done():
                future.set_exception(ConnectionError("DevTools connection closed"))

    def expect(self, event: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the next ``event`` (register before causing it)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._events[event] = future
        return future

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        reply = await future
        if "error" in reply:
            raise AssertionError(f"{method} failed: {reply['error']}")
        return reply["result"]

    async def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page; a promise is awaited."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_until(self, condition: str, timeout: float) -> Any:
        """Resolve once the JavaScript ``condition`` is truthy, checked on every DOM change."""
        script = f"""new Promise((resolve, reject) => {{
            const check = () => {{ try {{ return ({condition}); }} catch (e) {{ return null; }} }};
            const first = check();
            if (first) {{ resolve(first); return; }}
            const observer = new MutationObserver(() => {{
                const value = check();
                if (value) {{ observer.disconnect(); clearTimeout(timer); resolve(value); }}
            }});
            observer.observe(document, {{subtree: true, childList: true, attributes: true,
                                         characterData: true}});
            const timer = setTimeout(() => {{ observer.disconnect();
                reject(new Error("timed out waiting for: " + {json.dumps(condition)})); }},
                {int(timeout * 1000)});
        }})"""
        return await self.evaluate(script)

    async def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode((await self.send("Page.captureScreenshot", format="png"))["data"])
        path.write_bytes(data)
        return data

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Chromium:
    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.process: asyncio.subprocess.Process | None = None
        self.http_base = ""
        self._session: aiohttp.ClientSession | None = None

    async def start(self, timeout: float = 30.0) -> Chromium:
        self.process = await asyncio.create_subprocess_exec(
            chromium_binary(),
            *FLAGS,
            f"--user-data-dir={self.profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.process.stderr is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.process.stderr.readline()
                if not line:
                    raise AssertionError("chromium exited before opening DevTools")
                found = _LISTENING.search(line)
                if found:
                    break
        ws_url = found.group(1).decode()
        self.http_base = "http://" + ws_url.removeprefix("ws://").split("/", 1)[0]
        # Keep draining stderr so the browser never blocks on a full pipe.
        self._drain = asyncio.create_task(self._drain_stderr())
        self._session = aiohttp.ClientSession()
        return self

    async def _drain_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while await self.process.stderr.readline():
            pass

    async def open(self, url: str) -> Page:
        assert self._session is not None
        async with self._session.get(f"{self.http_base}/json/list") as r:
            targets = await r.json()
        target = next(t for t in targets if t.get("type") == "page")
        ws = await self._session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        await page.send("Page.enable")
        loaded = page.expect("Page.loadEventFired")
        await page.send("Page.navigate", url=url)
        async with asyncio.timeout(15):
            await loaded
        return page

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        process = self.process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        drain = getattr(self, "_drain", None)
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
