"""Build frozen dataclasses from raw YAML values, collecting every error by its path.

The schema is the dataclasses themselves: field types drive conversion, field metadata adds
what types cannot say (``parse=`` a custom converter, ``check=`` a validator, ``key=`` the
YAML spelling). Unknown keys are errors with a did-you-mean. Nothing here knows Pilotfish's
sections; ``schema.py`` does.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from sidecar.config.units import parse_duration, parse_size

T = TypeVar("T")


class Duration:
    """Marker: ``Annotated[float, Duration]`` fields accept ``250ms``, ``5s``, ``1m``."""


class Size:
    """Marker: ``Annotated[int, Size]`` fields accept ``64KiB``."""


class Invalid(Exception):
    """A value is wrong; the message is what follows ``path: ``."""


def field(
    default: Any = dataclasses.MISSING,
    *,
    parse: Callable[[Any], Any] | None = None,
    check: Callable[[Any], str | None] | None = None,
    key: str | None = None,
    default_factory: Any = dataclasses.MISSING,
    doc: str = "",
) -> Any:
    meta = {"parse": parse, "check": check, "key": key, "doc": doc}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v is None or v >= low else f"must be >= {low:g}, got {v!r}"


def between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be in {low:g}..{high:g}, got {v!r}"


def positive(v: Any) -> str | None:
    return None if v is None or v > 0 else f"must be > 0, got {v!r}"


_PATH_UNSAFE = re.compile(r"[\x00-\x20\x7f#]")
_AUTHORITY_UNSAFE = re.compile(r"[\x00-\x20\x7f/\\?#@]")


def origin_path(v: Any) -> str | None:
    """A request target in origin form (RFC 9112 §3.2.1): sent as it is, so checked here."""
    if v is None:
        return None
    if not v.startswith("/") or _PATH_UNSAFE.search(v):
        return f"must be a path starting with / without spaces or control characters, got {v!r}"
    return None


def authority(v: Any) -> str | None:
    """A Host field's value: host[:port], nothing a request line or field could break on."""
    if v is None:
        return None
    if not v or _AUTHORITY_UNSAFE.search(v):
        return f"must be a host or host:port, got {v!r}"
    return None


def non_empty(v: Any) -> str | None:
    return None if v is None or v.strip() else "must not be empty"


class Builder:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}" if path else message)

    def build(self, cls: type[T], raw: Any, path: str) -> T | None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            self.error(path, f"expected a mapping, got {_kind(raw)}")
            return None
        hints, fields = _schema(cls)
        for k in raw:
            if k not in fields:
                self.error(_join(path, str(k)), _unknown(str(k), list(fields)))
        values: dict[str, Any] = {}
        ok = True
        for key, f in fields.items():
            sub = _join(path, key)
            if key not in raw:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    self.error(sub, "required")
                    ok = False
                continue
            try:
                value = self.convert(hints[f.name], raw[key], sub, f.metadata.get("parse"))
                check = f.metadata.get("check")
                message = check(value) if check else None
                if message:
                    raise Invalid(message)
                values[f.name] = value
            except Invalid as exc:
                self.error(sub, str(exc))
                ok = False
            except Nested:
                ok = False
        if not ok:
            return None
        try:
            return cls(**values)
        except (Invalid, ValueError) as exc:
            self.error(path, str(exc))
            return None

    def convert(self, hint: Any, value: Any, path: str, parse: Callable[[Any], Any] | None) -> Any:
        if parse is not None:
            try:
                return parse(value) if not _wants_builder(parse) else parse(value, self, path)
            except ValueError as exc:
                raise Invalid(str(exc)) from None
        origin = get_origin(hint)
        if origin is Annotated:
            base, *marks = get_args(hint)
            try:
                if Duration in marks:
                    return parse_duration(value)
                if Size in marks:
                    return parse_size(value)
            except ValueError as exc:
                raise Invalid(str(exc)) from None
            return self.convert(base, value, path, None)
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(hint) if a is not type(None)]
            if value is None:
                return None
            return self.convert(args[0], value, path, None)
        if origin is Literal:
            choices = get_args(hint)
            if value not in choices:
                listed = ", ".join(sorted(str(c) for c in choices))
                raise Invalid(f"unknown value {value!r}; expected one of: {listed}")
            return value
        if origin is tuple:
            if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
                raise Invalid(f"expected a list, got {_kind(value)}")
            item = get_args(hint)[0]
            out = []
            failed = False
            for i, v in enumerate(value):
                try:
                    out.append(self.convert(item, v, f"{path}[{i}]", None))
                except Invalid as exc:
                    self.error(f"{path}[{i}]", str(exc))
                    failed = True
                except Nested:
                    failed = True
            if failed:
                raise Nested
            return tuple(out)
        if origin in (dict, Mapping, typing.Mapping) or hint is dict:
            if not isinstance(value, Mapping):
                raise Invalid(f"expected a mapping, got {_kind(value)}")
            for k, v in value.items():
                if not isinstance(v, str | int | float) or isinstance(v, bool):
                    raise Invalid(f"{k}: expected a string value, got {_kind(v)}")
            return {str(k): str(v) for k, v in value.items()}
        if dataclasses.is_dataclass(hint):
            built = self.build(hint, value, path)
            if built is None:
                raise Nested
            return built
        return _scalar(hint, value)


@functools.cache
def _schema(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """A config class's type hints and its fields by config key (resolving the hints
    evaluates every annotation's text: done once per class, not per section built)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {(f.metadata.get("key") or f.name): f for f in dataclasses.fields(cls) if f.init}
    return hints, fields


class Nested(Exception):
    """Errors already recorded deeper down."""


def _wants_builder(parse: Callable[..., Any]) -> bool:
    return getattr(parse, "wants_builder", False)


def _scalar(hint: Any, value: Any) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise Invalid(f"expected true or false, got {_kind(value)} {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise Invalid(f"expected an integer, got {_kind(value)} {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise Invalid(f"expected a number, got {_kind(value)} {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise Invalid(f"expected a string, got {_kind(value)}")
    raise TypeError(f"config schema uses an unsupported type {hint!r}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _unknown(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(known)}"
    return f"unknown key{hint}"
