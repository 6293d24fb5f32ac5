"""The console's source (tinyfleet/server/dashboard: index.html, css, js modules) as one text, for the
tests that check each field the pages read (`var.field`) against what the API really returns."""

from __future__ import annotations

import re

from tests.support.paths import REPO

CONSOLE_DIR = REPO / "tinyfleet" / "server" / "dashboard"
INDEX = CONSOLE_DIR / "index.html"


def source(suffixes: tuple[str, ...] = (".html", ".js", ".css")) -> str:
    files = sorted(p for p in CONSOLE_DIR.rglob("*") if p.suffix in suffixes)
    return "\n".join(p.read_text() for p in files)


def fields(var: str) -> set[str]:
    """The fields the scripts read off `var` (`var.field`, not a method call; CSS selectors left out)."""
    return set(re.findall(rf"\b{re.escape(var)}\.([a-z_]+)\b(?!\()", source((".js",))))
