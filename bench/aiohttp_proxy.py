"""The naive-Python reference for Pilotfish's benchmark: a minimal aiohttp reverse proxy.

What a person would write in an afternoon: one aiohttp server, one shared ClientSession, the
request forwarded as is and the response body read whole and sent back. It shows what the
asyncio + aiohttp stack costs before any policy is added.

Invariants: one upstream; hop-by-hop headers are not forwarded in either direction; no access
log; the default asyncio event loop (no uvloop), as the plain reference.
"""

from __future__ import annotations

import argparse

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
SESSION_KEY = web.AppKey("session", ClientSession)


def forwardable(headers: object) -> dict[str, str]:
    """Headers minus hop-by-hop ones and those aiohttp recomputes for the new message."""
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}  # type: ignore[attr-defined]


def build_app(upstream: str) -> web.Application:
    async def open_session(app: web.Application) -> None:
        app[SESSION_KEY] = ClientSession(
            connector=TCPConnector(limit=256, keepalive_timeout=90),
            timeout=ClientTimeout(total=30),
            auto_decompress=False,
        )

    async def close_session(app: web.Application) -> None:
        await app[SESSION_KEY].close()

    async def proxy(request: web.Request) -> web.Response:
        body = await request.read()
        async with request.app[SESSION_KEY].request(
            request.method,
            upstream + request.path_qs,
            headers=forwardable(request.headers),
            data=body or None,
            allow_redirects=False,
        ) as upstream_response:
            payload = await upstream_response.read()
            headers = forwardable(upstream_response.headers)
            return web.Response(status=upstream_response.status, body=payload, headers=headers)

    app = web.Application()
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=19204)
    parser.add_argument("--upstream", default="http://127.0.0.1:18081")
    args = parser.parse_args()
    web.run_app(
        build_app(args.upstream.rstrip("/")),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
