"""The shell commands of the user docs, and the list of those run elsewhere.

Commands are the lines of ```sh, ```bash and ```shell blocks, and the ``$ `` lines of
```console blocks, in README.md and docs/*.md (the benchmark pages excepted: their commands
are the benchmark harness's), with comments dropped and continuation lines joined.

``RUNNABLE`` commands are run by ``tests/docs/page_run.py``. Every other one must match an
entry of ``LISTED``, which names where the same command runs and the text there that shows
it; that text is checked, so an entry cannot outlive what it points at.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = "docs/quickstart.md"
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELL_LANGS = frozenset({"sh", "bash", "shell"})

CHECK = re.compile(r"(?:\.venv/bin/)?pilotfish check-config (?P<file>\S+\.ya?ml)")
RUN = re.compile(
    r"(?P<env>(?:\w+=\S+ )*)(?:\.venv/bin/)?pilotfish run --config (?P<file>\S+\.ya?ml)"
)
CURL = re.compile(r"curl -s (?P<url>(?:http://)?127\.0\.0\.1:\d+/\S*)")
RUNNABLE = (CHECK, RUN, CURL)


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # of the opening fence
    text: str


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    text: str  # words joined by one space, comment dropped

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def pages() -> list[str]:
    docs = sorted(p for p in (ROOT / "docs").glob("*.md") if not p.name.startswith("benchmarks"))
    return ["README.md", *(str(p.relative_to(ROOT)) for p in docs)]


def blocks(markdown: str) -> list[Block]:
    return [
        Block(m.group(1), markdown.count("\n", 0, m.start()) + 1, m.group(2))
        for m in _FENCE.finditer(markdown)
    ]


def commands_in(page: str, markdown: str) -> list[Command]:
    found = []
    for block in blocks(markdown):
        if block.lang not in SHELL_LANGS | {"console"}:
            continue
        pending, start = "", 0
        for offset, line in enumerate(block.text.splitlines(), start=block.line + 1):
            if block.lang == "console":
                if not line.startswith("$ ") and not pending:
                    continue  # output
                line = line.removeprefix("$ ")
            start = start or offset
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            words = shlex.split(pending + line, comments=True)
            pending = ""
            if words:
                found.append(Command(page, start, " ".join(words)))
            start = 0
    return found


def read(page: str) -> str:
    return (ROOT / page).read_text(encoding="utf-8")


def all_commands() -> list[Command]:
    return [c for page in pages() for c in commands_in(page, read(page))]


def config_blocks(markdown: str) -> list[Block]:
    out = []
    for block in blocks(markdown):
        if block.lang == "yaml":
            data = yaml.safe_load(block.text)
            if isinstance(data, dict) and "service" in data:
                out.append(block)
    return out


def config_for(command: Command) -> str:
    """The ``pilotfish.yaml`` a reader of ``command``'s page has written by then.

    That is the nearest config block (a ```yaml block with a ``service`` key) above the
    command, else the first one below it; a page without one refers to the reader's own file,
    the quick start's first config.
    """
    configs = config_blocks(read(command.page))
    above = [b for b in configs if b.line < command.line]
    if above:
        return above[-1].text
    if configs:
        return configs[0].text
    return config_blocks(read(QUICKSTART))[0].text


# -- the commands run elsewhere ---------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    where: str  # a file, or "file::function"
    shows: str  # text that must be there


@dataclass(frozen=True)
class Listed:
    command: str  # regex matching the whole command
    runs_it: tuple[Evidence, ...]
    why: str


DEMO_TEST = "tests/sidecar/test_process.py::test_demo_runs_its_duration_and_stops_cleanly"
STACK = "tests/compose/test_stack_up.py"
COMPOSE = "docker compose -f compose/docker-compose.yml"
SIMULATE_CLI = "tests/simulate/test_cli.py"

TROUBLESHOOTING_TEST = "tests/docs/test_troubleshooting_doc.py"
DEPLOY_TEST = "tests/docs/test_deploy_doc.py"
UNIT_RUN = f"{DEPLOY_TEST}::test_the_units_commands_start_wait_for_ready_and_stop_a_real_sidecar"

LISTED: tuple[Listed, ...] = (
    Listed(
        r"\.venv/bin/check-jsonschema --builtin-schema vendor\.compose-spec "
        r"compose/docker-compose\.yml",
        (
            Evidence(
                "tests/compose/test_compose_file.py::_check_schema",
                '"--builtin-schema", "vendor.compose-spec"',
            ),
            Evidence(
                "tests/compose/test_compose_file.py::"
                "test_compose_file_matches_the_compose_specification",
                "_check_schema(COMPOSE_FILE)",
            ),
        ),
        "the compose tests run the same check on the same file",
    ),
    Listed(
        r"\.venv/bin/pytest -q tests/compose",
        (
            Evidence("Makefile", "$(BIN)/pytest -q"),
            Evidence("pyproject.toml", "addopts = \"-m 'not compose'\""),
        ),
        "`make test` runs the whole suite, tests/compose included, leaving out the test "
        "marked compose",
    ),
    Listed(
        r"sudo useradd --system --no-create-home --shell /usr/sbin/nologin pilotfish",
        (Evidence("compose/Dockerfile", "useradd --system --uid 10001 --no-create-home"),),
        "the image creates the same system user (with a fixed uid for Kubernetes)",
    ),
    Listed(
        r"sudo python3 -m venv /opt/pilotfish|sudo /opt/pilotfish/bin/pip install \.",
        (
            Evidence("Makefile", "$(PYTHON) -m venv $(VENV)"),
            Evidence("compose/Dockerfile", "RUN pip install ."),
        ),
        "the Makefile makes a venv the same way; the image installs the checkout with "
        "`pip install .`, which the compose tests build",
    ),
    Listed(
        r"sudo mkdir -p /etc/pilotfish|/opt/pilotfish/bin/pilotfish example consul "
        r"\| sudo tee /etc/pilotfish/pilotfish\.yaml",
        (
            Evidence(UNIT_RUN, 'yaml.safe_load(example("consul"))'),
            Evidence(UNIT_RUN, '(tmp_path / "etc" / "pilotfish").mkdir(parents=True)'),
        ),
        "the unit test writes `pilotfish example consul` to etc/pilotfish/pilotfish.yaml "
        "under a temporary root and runs the unit's commands on it",
    ),
    Listed(
        r"sudo systemctl (daemon-reload|enable --now pilotfish)",
        (
            Evidence(f"{DEPLOY_TEST}::test_the_unit_passes_systemd_analyze_verify", '"verify"'),
            Evidence(UNIT_RUN, 'unit.one("ExecStart")'),
            Evidence(UNIT_RUN, 'unit.one("ExecStartPost")'),
            Evidence(UNIT_RUN, 'unit.one("KillSignal")'),
        ),
        "no systemd runs in the tests: the unit is verified by systemd-analyze, and its "
        "ExecStart, ExecStartPost and KillSignal are run as systemd would run them",
    ),
    Listed(
        r'kill -HUP "?\$\(pidof -s pilotfish\)"?',
        (
            Evidence(
                "tests/sidecar/test_reload_process.py::"
                "test_sighup_reloads_the_file_and_the_process_stays",
                "process.proc.send_signal(signal.SIGHUP)",
            ),
        ),
        "the reload test sends SIGHUP to a running `pilotfish run` and waits for version 2",
    ),
    Listed(
        r"curl -X POST http://127\.0\.0\.1:15900/reload",
        (
            Evidence(
                "tests/sidecar/test_reload_process.py::"
                "test_200_reloads_under_load_lose_nothing_and_leave_nothing_behind",
                'session.post(f"http://127.0.0.1:{process.admin}/reload")',
            ),
        ),
        "the reload tests POST /reload from 127.0.0.1 to a running `pilotfish run`",
    ),
    Listed(
        r"systemd-analyze verify pilotfish\.service",
        (Evidence(f"{DEPLOY_TEST}::test_the_unit_passes_systemd_analyze_verify", '"verify"'),),
        "the deploy test runs it on the page's unit (ExecStart pointing at this checkout)",
    ),
    Listed(
        r"kubectl apply -f orders\.yaml",
        (
            Evidence(
                f"{DEPLOY_TEST}::test_the_manifests_are_valid_for_the_pinned_kubernetes_version",
                "kubernetes_validate.validate(doc, KUBERNETES, strict=True)",
            ),
        ),
        "no cluster runs in the tests: the manifests are validated against Kubernetes' "
        "schemas, strictly, and their probes, hooks and grace period checked",
    ),
    Listed(
        r"\.venv/bin/kubernetes-validate --kubernetes-version 1\.33\.0 --strict orders\.yaml",
        (
            Evidence(
                f"{DEPLOY_TEST}::test_the_pages_validate_command_runs_offline",
                "[str(tool), *words[1:]]",
            ),
        ),
        "the deploy test runs the page's command on the page's manifests, with no network",
    ),
    Listed(
        r"\.venv/bin/pilotfish explain [A-Za-z_]+",
        (
            Evidence(
                f"{TROUBLESHOOTING_TEST}::test_the_page_shows_what_pilotfish_explain_prints",
                'assert words[:2] == [".venv/bin/pilotfish", "explain"]',
            ),
        ),
        "the troubleshooting test runs the page's `pilotfish explain` and compares its output "
        "with the page",
    ),
    Listed(
        r"make demo",
        (
            Evidence("Makefile", "$(BIN)/pilotfish demo --duration 30 --chaos"),
            Evidence(DEMO_TEST, '"sidecar", "demo", "--duration"'),
            Evidence(DEMO_TEST, '"--chaos"'),
        ),
        "the Makefile's demo target is `pilotfish demo --duration 30 --chaos`, which the demo "
        "test runs with a shorter duration, with and without --chaos",
    ),
    Listed(
        r"(?:\.venv/bin/)?pilotfish demo(?: --duration \d+| --rate \d+| --chaos)*",
        (Evidence(DEMO_TEST, '"demo", "--duration", "3", "--rate", "40"'),),
        "the demo test runs `pilotfish demo` with --duration, --rate and --chaos; only the "
        "numbers differ",
    ),
    Listed(
        r"make test",
        (Evidence(".ci/run", "make test"),),
        "CI runs `make test` on a clean checkout",
    ),
    Listed(
        re.escape(f"{COMPOSE} up -d --build --wait"),
        (
            Evidence(STACK, 'COMPOSE = ["docker", "compose", "-f", str(COMPOSE_FILE)]'),
            Evidence(f"{STACK}::stack", '[*COMPOSE, "up", "-d", "--build", "--wait"]'),
        ),
        "the compose-marked stack test runs it (on a Docker engine: pytest -m compose); "
        "the rest of tests/compose checks the stack's files without Docker",
    ),
    Listed(
        r"curl -s http://localhost:8080/checkout",
        (
            Evidence(
                f"{STACK}::test_requests_cross_three_services_and_show_in_metrics",
                'urlopen("http://127.0.0.1:8080/checkout"',
            ),
        ),
        "the stack test sends the same request to frontend's sidecar",
    ),
    Listed(
        re.escape(f"{COMPOSE} --profile chaos up -d"),
        (
            Evidence(f"{STACK}::stack", '"up", "-d"'),
            Evidence(
                "tests/compose/test_compose_file.py::"
                "test_chaos_profile_drives_payments_2_through_the_docker_socket",
                '"chaos"',
            ),
        ),
        "the stack test runs `up -d`; what the chaos profile adds is checked, not started",
    ),
    Listed(
        re.escape(f"{COMPOSE} --profile chaos down -v"),
        (Evidence(f"{STACK}::stack", '[*COMPOSE, "down", "-v"]'),),
        "the stack test runs `down -v`; the profile flag only adds the chaos container",
    ),
    Listed(
        r"(?:\.venv/bin/)?pilotfish simulate --config \S+\.yaml --scenario \S+\.yaml"
        r"(?: --seed \d+)?(?: --json \S+)?(?: --plot \S+\.png)?",
        (
            Evidence(
                f"{SIMULATE_CLI}::test_a_run_prints_the_table_and_writes_json_and_a_png",
                '"--json", str(out_json), "--plot", str(out_png)',
            ),
            Evidence(
                f"{SIMULATE_CLI}::test_the_same_seed_gives_byte_identical_json_in_any_process",
                '"--seed", "2"',
            ),
        ),
        "the simulate tests run it on config and scenario files of their own, with --json, "
        "--plot and --seed",
    ),
    Listed(
        r"(?:\.venv/bin/)?pilotfish simulate --example flapping-endpoint --compare tuned"
        r"(?: --plot \S+\.png)?",
        (
            Evidence(
                "tests/simulate/test_docs.py::test_the_worked_story_is_what_the_example_prints",
                '["--example", "flapping-endpoint", "--compare", "tuned"]',
            ),
        ),
        "the docs test runs it and finds the table it prints on the page; --plot is run by "
        "the simulate command tests",
    ),
    Listed(
        r"docker run --rm -p 16686:16686 -p 4318:4318 jaegertracing/jaeger:2\.1\.0",
        (
            Evidence("compose/docker-compose.yml", "image: jaegertracing/jaeger:2.1.0"),
            Evidence("compose/docker-compose.yml", '- "16686:16686"'),
            Evidence("compose/docker-compose.yml", '- "4318:4318"'),
            Evidence(f"{STACK}::stack", '[*COMPOSE, "up", "-d", "--build", "--wait"]'),
        ),
        "the compose stack runs the same image with the same ports published",
    ),
)


def is_runnable(command: str) -> bool:
    return any(p.fullmatch(command) for p in RUNNABLE)


def listing(command: str) -> Listed | None:
    return next((e for e in LISTED if re.fullmatch(e.command, command)), None)


def uncovered(commands: list[Command]) -> list[str]:
    return [str(c) for c in commands if not is_runnable(c.text) and listing(c.text) is None]


def source_of(where: str) -> str:
    path, _, function = where.partition("::")
    text = (ROOT / path).read_text(encoding="utf-8")
    if not function:
        return text
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            return ast.get_source_segment(text, node) or ""
    raise AssertionError(f"{path} has no function {function}")
