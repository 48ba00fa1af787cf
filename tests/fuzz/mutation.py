"""Seeded byte mutations of well-formed HTTP/1.1 messages, for the wire fuzz tests.

A seed fixes every message a test sends, so a failure names the exact bytes and can be
replayed. The tokens are the ones request-smuggling and parser bugs are made of: line
ends, separators, framing field names and values, overflowing numbers, NUL and non-ASCII.
"""

from __future__ import annotations

import random

TOKENS = (
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b":",
    b"\x00",
    b"\xff",
    b"0",
    b"-1",
    b"99999999999999999999",
    b"chunked",
    b"Content-Length",
    b"Transfer-Encoding",
    b",",
    b"\t",
    b"HTTP/1.1",
    b"HTTP/2.0",
    b"Host",
    b"%00",
    b"/../",
    b";",
    b"=",
    b"\x7f",
    b"\xc3\xa9",
)


def mutate(rng: random.Random, message: bytes, pool: tuple[bytes, ...]) -> bytes:
    """``message`` with one to four edits: a token or a whole message of ``pool`` inserted,
    a run of bytes deleted, one byte replaced, or the tail cut off."""
    out = bytearray(message)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        i = rng.randint(0, len(out))
        if op < 0.3:
            out[i:i] = rng.choice(TOKENS)
        elif op < 0.5:
            del out[i : i + rng.randint(1, 8)]
        elif op < 0.7 and out:
            out[min(i, len(out) - 1)] = rng.randrange(256)
        elif op < 0.85:
            out[i:i] = rng.choice(pool)
        else:
            del out[i:]
    return bytes(out)


def corpus(seed: int, count: int, pool: tuple[bytes, ...]) -> list[bytes]:
    """``count`` mutated messages (each from one or two well-formed ones of ``pool``)."""
    rng = random.Random(seed)
    return [mutate(rng, rng.choice(pool) * rng.randint(1, 2), pool) for _ in range(count)]
