"""``pilotfish demo`` as a user meets it: the live admin page's address on every frame,
each backend's endpoint shown, bad options refused in one line, Ctrl-C ending it cleanly."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import aiohttp
import pytest

DEMO = [sys.executable, "-m", "sidecar", "demo"]
PAGE = re.compile(r"^live admin page: (http://127\.0\.0\.1:\d+/) ", re.MULTILINE)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--rate", "0"],
            "Invalid value for '--rate': must be more than 0 and at most 1000, not 0",
        ),
        (["--rate", "-5"], "Invalid value for '--rate': must be more than 0"),
        (["--rate", "nan"], "Invalid value for '--rate': must be more than 0"),
        (["--rate", "1e9"], "Invalid value for '--rate': must be more than 0 and at most 1000"),
        (["--duration", "0"], "Invalid value for '--duration': must be more than 0"),
        (["--duration", "inf"], "Invalid value for '--duration': must be more than 0"),
        (["--duration", "soon"], "Invalid value for '--duration': 'soon' is not a valid float"),
    ],
)
async def test_bad_options_are_refused_in_one_line_without_a_traceback(
    args: list[str], error: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *DEMO, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert error in err.decode() and "Traceback" not in err.decode()
    assert out == b""


async def test_ctrl_c_ends_the_demo_with_its_summary_and_exit_0() -> None:
    proc = await asyncio.create_subprocess_exec(
        *DEMO, "--duration", "60", "--rate", "40",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        seen = ""
        async with asyncio.timeout(30):
            while len(PAGE.findall(seen)) < 2:  # two frames: the address stays on screen
                seen += (await proc.stdout.readline()).decode()
        address = PAGE.findall(seen)[-1]
        assert f"live admin page: {address}" in seen.splitlines()[0]
        async with aiohttp.ClientSession() as session, session.get(address) as page:
            assert page.status == 200
            assert page.headers["Content-Type"].startswith("text/html")
        for name in ("alpha", "bravo", "charlie"):
            assert re.search(rf"^  {name} +127\.0\.0\.1:\d+ ", seen, re.MULTILINE), seen
        proc.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = rest.decode()
    assert proc.returncode == 0, err.decode()
    assert "interrupted" in text and "Aborted" not in err.decode() + text
    assert "Traceback" not in err.decode()
    last = text.strip().splitlines()[-1]
    assert re.fullmatch(r"sent \d+ requests, 0 failed, \d+ retried", last), last
