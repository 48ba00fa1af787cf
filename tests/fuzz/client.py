"""A raw HTTP/1.1 client for fuzz tests: sends bytes as they are, reads one answer."""

from __future__ import annotations

import asyncio
import random

import httptools

SILENCE = 1.0  # a truncated message gets no answer: the client gives up after this


async def send(writer: asyncio.StreamWriter, data: bytes, rng: random.Random, piece: int) -> None:
    """``data`` in one write, or (half the time) in ``piece``-byte writes, each drained."""
    if rng.random() < 0.5:
        writer.write(data)
    else:
        for i in range(0, len(data), piece):
            writer.write(data[i : i + piece])
            await writer.drain()
    await writer.drain()


class _HeadDone(Exception):
    pass


class _FirstResponse:
    def __init__(self, head: bool) -> None:
        self.head = head  # the answer to HEAD ends with its headers, whatever they announce
        self.parser = httptools.HttpResponseParser(self)
        self.complete = False

    def on_headers_complete(self) -> None:
        if self.head and self.parser.get_status_code() >= 200:
            self.complete = True
            raise _HeadDone  # what follows belongs to the next answer: stop parsing here

    def on_message_complete(self) -> None:
        self.complete = True


async def answer_to(
    port: int,
    data: bytes,
    rng: random.Random,
    *,
    may_stall: bool = True,
    patience: float = SILENCE,
) -> int | None:
    """Sends ``data`` (see ``send``) and returns the status of the first
    complete response, or None when the connection closes first, or stays silent for
    ``patience`` seconds (``TimeoutError`` instead when not ``may_stall``). Whatever comes
    back must parse as HTTP/1.1: a parser error propagates."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sink = _FirstResponse(data.startswith(b"HEAD "))
    parser = sink.parser
    try:
        await send(writer, data, rng, 7)
        async with asyncio.timeout(patience):
            while not sink.complete:
                chunk = await reader.read(65536)
                if not chunk:
                    return None
                try:
                    parser.feed_data(chunk)
                except httptools.HttpParserCallbackError as exc:
                    if not isinstance(exc.__context__, _HeadDone):
                        raise
        return parser.get_status_code()
    except TimeoutError:
        if may_stall:
            return None
        raise TimeoutError(f"no complete answer within {patience}s to {data!r}") from None
    except ConnectionError:
        return None
    finally:
        writer.close()
