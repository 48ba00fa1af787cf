"""Load a config: YAML text → ``${VAR}`` expansion → environment overrides → ``Config``.

All errors are collected and raised together as one ``ConfigError`` whose lines each name
a path. Environment overrides follow the conventions users already know: Consul's
``CONSUL_HTTP_*`` variables and OpenTelemetry's ``OTEL_*`` variables override the file.

A key given twice in one mapping is an error naming its path and both lines (YAML loaders
silently keep the last one). A ``${VAR}`` left unquoted inside ``{...}`` or ``[...]`` breaks
the YAML itself; the error then says to quote it. An unset variable is one error: the value
it left empty is not reported again.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from sidecar.config.build import Builder
from sidecar.config.schema import Config

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_BARE_VAR = re.compile(r"(?<![\"'\w])\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}")
_MERGE = "tag:yaml.org,2002:merge"
_SECRET_KEYS = frozenset({"token", "headers"})


# libyaml's loader where PyYAML was built with it (its wheels are): the same documents and
# errors with positions, ten times faster than the pure-Python one.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def plural(count: int, noun: str) -> str:
    """``1 error``, ``2 errors``: a count with its noun."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class ConfigError(Exception):
    def __init__(self, errors: list[str], source: str = "config") -> None:
        self.errors = errors
        self.source = source
        super().__init__("\n".join(errors))


def load_file(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror or exc}"], str(path)) from None
    return load_text(text, environ, source=str(path))


def load_text(
    text: str, environ: Mapping[str, str] | None = None, source: str = "config"
) -> Config:
    env = os.environ if environ is None else environ
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is not None and (duplicates := list(_duplicate_keys(node, "", set()))):
            raise ConfigError(duplicates, source)
        raw = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_error(exc, text)], source) from None
    finally:
        loader.dispose()
    return load_data(raw, env, source)


def _yaml_error(exc: yaml.YAMLError, text: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    message = f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}"
    line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
    if bare := _BARE_VAR.search(line):
        # "{" opens a mapping inside {...} or [...]: a bare ${VAR} there is not one value
        message += f'; inside {{...}} or [...] write {bare.group(0)} in quotes: "{bare.group(0)}"'
    return message


def _duplicate_keys(node: yaml.Node, path: str, seen: set[int]) -> Iterator[str]:
    """An error for each key given twice in one mapping, by path, with both lines."""
    if id(node) in seen:  # an alias of a node already walked
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, f"{path}[{i}]", seen)
    elif isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE:
                continue  # keys a merge (<<) brings in may be overridden: that is its point
            here = f"{path}.{key.value}" if path else key.value
            line = key.start_mark.line + 1
            if key.value in lines:
                first = lines[key.value]
                where = f"line {line}" if first == line else f"lines {first} and {line}"
                yield f"{here}: given twice ({where})"
            else:
                lines[key.value] = line
            yield from _duplicate_keys(value, here, seen)


def load_data(raw: object, env: Mapping[str, str], source: str = "config") -> Config:
    """The configuration held by ``raw``, a parsed document (YAML's or JSON's); ``env``
    supplies ``${VAR}`` values and the variables that override keys. ``raw`` is changed."""
    if not isinstance(raw, dict):
        raise ConfigError(
            ["the file must hold a mapping with at least a 'service' section"], source
        )
    errors: list[str] = []
    raw = _expand(raw, env, "", errors)
    unset = tuple(e.partition(": ")[0] for e in errors)  # values left empty, said already
    apply_environment(raw, env)
    builder = Builder()
    config = builder.build(Config, raw, "")
    errors.extend(e for e in builder.errors if not _under(e, unset))
    if config is not None:
        errors.extend(cross_check(config))
    if errors:
        raise ConfigError(errors, source)
    assert config is not None
    return config


def _under(error: str, paths: tuple[str, ...]) -> bool:
    """Whether ``error`` is about one of ``paths`` or something inside it."""
    return any(error.startswith((f"{p}:", f"{p}.", f"{p}[")) for p in paths)


def _expand(value: Any, env: Mapping[str, str], path: str, errors: list[str]) -> Any:
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            errors.append(f"{path or 'config'}: environment variable {name} is not set")
            return ""

        expanded = _VAR.sub(sub, value)
        if expanded != value and expanded.isdigit():
            return int(expanded)  # a port from the environment is still a number
        return expanded
    if isinstance(value, dict):
        return {
            k: _expand(v, env, f"{path}.{k}" if path else str(k), errors) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_expand(v, env, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    return value


def apply_environment(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    """Overlay Consul's and OpenTelemetry's environment variables onto the raw mapping."""
    consul = raw.setdefault("consul", {}) if isinstance(raw.get("consul", {}), dict) else None
    if consul is not None:
        addr = env.get("CONSUL_HTTP_ADDR")
        if addr:
            scheme, sep, rest = addr.partition("://")
            if sep:
                consul["scheme"], consul["address"] = scheme, rest
            else:
                consul["address"] = addr
        token = env.get("CONSUL_HTTP_TOKEN")
        token_file = env.get("CONSUL_HTTP_TOKEN_FILE")
        # Consul's precedence: a token file wins over the token variable.
        if token_file and Path(token_file).is_file():
            consul["token"] = Path(token_file).read_text(encoding="utf-8").strip()
        elif token:
            consul["token"] = token
        if env.get("CONSUL_HTTP_SSL", "").lower() in ("1", "true"):
            consul["scheme"] = "https"
        tls = consul.setdefault("tls", {}) if isinstance(consul.get("tls", {}), dict) else None
        if tls is not None:
            for var, key in (
                ("CONSUL_CACERT", "ca_file"),
                ("CONSUL_CLIENT_CERT", "cert_file"),
                ("CONSUL_CLIENT_KEY", "key_file"),
            ):
                if env.get(var):
                    tls[key] = env[var]
            verify = env.get("CONSUL_HTTP_SSL_VERIFY")
            if verify:
                tls["verify"] = verify.lower() not in ("0", "false")
    tracing = raw.setdefault("tracing", {}) if isinstance(raw.get("tracing", {}), dict) else None
    if tracing is not None:
        if env.get("OTEL_SERVICE_NAME"):
            tracing["service_name"] = env["OTEL_SERVICE_NAME"]
        if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            tracing["endpoint"] = env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        elif env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            tracing["endpoint"] = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
        if env.get("OTEL_TRACES_SAMPLER"):
            tracing["sampler"] = env["OTEL_TRACES_SAMPLER"]
        if env.get("OTEL_TRACES_SAMPLER_ARG"):
            try:
                tracing["sampler_arg"] = float(env["OTEL_TRACES_SAMPLER_ARG"])
            except ValueError:
                tracing["sampler_arg"] = env["OTEL_TRACES_SAMPLER_ARG"]
        if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
            tracing["enabled"] = False
        for var, key in (
            ("OTEL_BSP_SCHEDULE_DELAY", "schedule_delay"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "export_timeout"),
        ):
            if env.get(var):  # OpenTelemetry gives these in milliseconds
                text = env[var]
                tracing[key] = f"{text}ms" if text.isdigit() else text
        for var, key in (
            ("OTEL_BSP_MAX_QUEUE_SIZE", "max_queue_size"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "max_export_batch_size"),
        ):
            if env.get(var):
                text = env[var]
                tracing[key] = int(text) if text.isdigit() else text


def cross_check(config: Config) -> list[str]:
    errors: list[str] = []
    seen_names: dict[str, int] = {}
    binds: dict[tuple[str, int], str] = {}

    def bind(host: str, port: int, what: str) -> None:
        if port == 0:
            return
        key = (host, port)
        if key in binds:
            errors.append(f"{what}: {host}:{port} is already used by {binds[key]}")
        binds[key] = what

    listeners = config.listeners
    bind(listeners.admin.address, listeners.admin.port, "listeners.admin")
    if listeners.inbound:
        bind(listeners.inbound.address, listeners.inbound.port, "listeners.inbound")
    if listeners.egress:
        bind(listeners.egress.address, listeners.egress.port, "listeners.egress")
    hosts: dict[str, str] = {}
    for i, up in enumerate(config.upstreams):
        path = f"upstreams[{i}]"
        if up.name in seen_names:
            errors.append(
                f"{path}.name: {up.name!r} is already the name of upstreams[{seen_names[up.name]}]"
            )
        seen_names[up.name] = i
        if up.listen is not None:
            bind(up.listen.host, up.listen.port, f"{path}.listen")
        elif listeners.egress is None:
            errors.append(f"{path}.listen: required unless listeners.egress routes to it by Host")
        for name in (up.name, *up.hosts):
            lowered = name.lower()
            if lowered in hosts and hosts[lowered] != up.name:
                errors.append(
                    f"{path}.hosts: {name!r} already routes to upstream {hosts[lowered]!r}"
                )
            hosts[lowered] = up.name
        if up.timeouts.total and up.retries.per_try_timeout > up.timeouts.total:
            errors.append(
                f"{path}.retries.per_try_timeout: longer than timeouts.total "
                f"({up.retries.per_try_timeout:g}s > {up.timeouts.total:g}s)"
            )
    if config.service.register and listeners.inbound is None:
        errors.append("service.register: needs listeners.inbound (the address registered)")
    return errors


def redacted(config: Config) -> dict[str, Any]:
    """The effective config as plain data, secrets replaced by ``<redacted>``."""
    return _plain(config, "")


def _plain(value: Any, key: str) -> Any:
    if key in _SECRET_KEYS and value:
        return "<redacted>"
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v, "") for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v, "") for v in value]
    return value
