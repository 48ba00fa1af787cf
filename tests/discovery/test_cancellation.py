"""A source's ``run()`` ends when cancelled, even if the cancellation lands with an answer.

Sources are stopped by cancelling ``run()`` (see ``waiting.running``). On Python 3.11,
``asyncio.wait_for`` returns the inner result instead of raising ``CancelledError`` when the
cancellation arrives after the awaited call has completed but before the caller resumed
(CPython gh-86296). A loop that does its network calls through it then goes on polling
forever, and whoever awaits the cancelled task waits forever too.

Real sockets cannot time an answer to one loop step, so the transport is replaced by a
stand-in whose answer lands in one step and whose cancellation of the caller follows in the
next, before the caller has run: exactly the window of that race.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import aiodns
import aiodns.error
import consul.base
import pytest

from discovery import consul_client
from discovery.consul import ConsulClientOptions, ConsulHealthWatcher, ConsulRegistration
from discovery.dns_srv import DnsSrvSource
from tests.discovery.waiting import Runnable

ENDS_WITHIN = 2.0
NOWHERE = "127.0.0.1:9"  # never contacted: the transport is replaced


class AnswerThenCancel:
    """Each call's answer lands one loop step later; the first is followed by a cancel."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.answers = 0

    def answer(self, land: Callable[[asyncio.Future[Any]], None]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def deliver() -> None:
            land(future)
            self.answers += 1
            if self.answers == 1 and self.task is not None:
                loop.call_soon(self.task.cancel)

        loop.call_soon(deliver)
        return future


def fake_consul(monkeypatch: pytest.MonkeyPatch, network: AnswerThenCancel) -> None:
    async def request(
        _transport: object, callback: Callable[[consul.base.Response], Any], method: str,
        uri: str, data: str | None = None, headers: object = None,
    ) -> Any:  # fmt: skip
        body = "[]" if "/v1/health/" in uri else "{}"
        response = consul.base.Response(200, {"X-Consul-Index": "7"}, body, body.encode())
        return callback(await network.answer(lambda f: f.set_result(response)))

    monkeypatch.setattr(consul_client._Transport, "_request", request)


def fake_dns(monkeypatch: pytest.MonkeyPatch, network: AnswerThenCancel) -> None:
    def query_dns(_resolver: object, name: str, qtype: str) -> asyncio.Future[Any]:
        error = aiodns.error.DNSError(aiodns.error.ARES_ENOTFOUND, "Domain name not found")
        return network.answer(lambda f: f.set_exception(error))

    monkeypatch.setattr(aiodns.DNSResolver, "query_dns", query_dns)


def consul_watcher() -> Runnable:
    options = ConsulClientOptions(address=NOWHERE)
    return ConsulHealthWatcher(options, service="web", min_interval=0.0, rng=random.Random(1))


def consul_registration() -> Runnable:
    options = ConsulClientOptions(address=NOWHERE)
    return ConsulRegistration(options, service_id="web-1", name="web", address="", port=80)


def dns_source() -> Runnable:
    return DnsSrvSource(name="web.service.consul", nameservers=[NOWHERE], rng=random.Random(1))


@pytest.mark.parametrize(
    ("make_source", "fake_network"),
    [
        (consul_watcher, fake_consul),
        (consul_registration, fake_consul),
        (dns_source, fake_dns),
    ],
    ids=["consul-watch", "consul-registration", "dns-srv"],
)
async def test_a_cancellation_arriving_with_an_answer_ends_run(
    monkeypatch: pytest.MonkeyPatch,
    make_source: Callable[[], Runnable],
    fake_network: Callable[[pytest.MonkeyPatch, AnswerThenCancel], None],
) -> None:
    network = AnswerThenCancel()
    fake_network(monkeypatch, network)
    source = make_source()
    task = asyncio.create_task(source.run())
    network.task = task
    try:
        done, _ = await asyncio.wait({task}, timeout=ENDS_WITHIN)
        assert done, (
            f"run() still going {ENDS_WITHIN}s after a cancellation that arrived with an "
            f"answer ({network.answers} answers so far): the cancellation was swallowed"
        )
        assert task.cancelled()
    finally:
        await source.close()  # lets a loop that swallowed the cancellation end on its own
        await asyncio.wait({task}, timeout=ENDS_WITHIN)
