"""The files docs/deploy.md and docs/security.md show, as a reader would save them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from tests.docs.doc_commands import blocks, read

DEPLOY = "docs/deploy.md"
SECURITY = "docs/security.md"
KUBERNETES = "1.33.0"  # the version the manifests are validated against, as the page says


def block(page: str, lang: str, containing: str = "") -> str:
    (found,) = [b.text for b in blocks(read(page)) if b.lang == lang and containing in b.text]
    return found


def manifests(page: str) -> list[dict[str, Any]]:
    """Every Kubernetes object of the page's ```yaml blocks (those with an apiVersion)."""
    docs: list[dict[str, Any]] = []
    for b in blocks(read(page)):
        if b.lang == "yaml":
            docs += [d for d in yaml.safe_load_all(b.text) if d and "apiVersion" in d]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


@dataclass(frozen=True)
class Unit:
    text: str
    service: dict[str, list[str]]  # key -> every value it is given, in order

    def one(self, key: str) -> str:
        (value,) = self.service[key]
        return value


def systemd_unit() -> Unit:
    text = block(DEPLOY, "ini", "[Service]")
    service: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():  # a unit may give a key more than once: keep them all
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            service.setdefault(key, []).append(value)
    return Unit(text, service)
