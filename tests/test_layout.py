"""The package layout holds: imports between tinyfleet's packages point one way only, no two classes share
a name, and the installed distribution brings exactly one top-level package, `tinyfleet`.

Import direction: signing <- device <- ml <- server, and sim beside server (it talks
to the control plane over HTTP and MQTT only); conformance (the device conformance kit) above server.
The top-level modules (cli, demo, demo_models) wire
everything together and may import anything; no package may import them.
"""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO

PACKAGE = REPO / "tinyfleet"
ALLOWED: dict[str, set[str]] = {
    "signing": set(),
    "device": {"signing"},
    "ml": {"signing", "device"},
    "server": {"signing", "device", "ml"},
    "sim": {"signing", "device", "ml"},
    # The device conformance kit drives a real server (and plays one); the device under test is another
    # process, so it needs no simulator.
    "conformance": {"signing", "device", "ml", "server"},
}
TOP_LEVEL_MODULES = {"cli", "demo", "demo_models"}


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    target: str  # absolute dotted name, e.g. tinyfleet.server.devbroker

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def imports(path: Path, text: str | None = None) -> Iterator[Import]:
    """Every import in the file, wherever it is (function bodies, `if TYPE_CHECKING:`, try/except), with
    relative imports made absolute; plus importlib.import_module("...") calls with a literal name.
    text: source to scan as if it were at path (for the scanner's own test)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    source = path.read_text(encoding="utf-8") if text is None else text
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == "tinyfleet":  # `from tinyfleet import server, sim`: each name is a package
                for alias in node.names:
                    yield Import(path, node.lineno, f"{base}.{alias.name}")
            else:
                yield Import(path, node.lineno, base)
        elif isinstance(node, ast.Call) and _is_import_module(node):
            yield Import(path, node.lineno, node.args[0].value)  # type: ignore[attr-defined]


def _is_import_module(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return (
        name == "import_module"
        and bool(call.args)
        and isinstance(call.args[0], ast.Constant)
        and isinstance(call.args[0].value, str)
    )


def area_of(dotted: str) -> str | None:
    """signing/device/ml/server/sim, the name of a top-level module, or None outside tinyfleet's parts."""
    parts = dotted.split(".")
    if parts[0] != "tinyfleet" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ALLOWED or parts[1] in TOP_LEVEL_MODULES else None


def test_every_package_module_is_checked() -> None:
    areas = {area_of(module_name(p)) for p in modules()}
    assert set(ALLOWED) <= areas, f"a package of the layout has no modules: {set(ALLOWED) - areas}"
    for path in PACKAGE.iterdir():
        if path.is_dir() and (path / "__init__.py").exists():
            assert path.name in ALLOWED, f"tinyfleet/{path.name} is a package this test has no rule for"
        elif path.suffix == ".py" and path.stem != "__init__":
            assert path.stem in TOP_LEVEL_MODULES, f"tinyfleet/{path.name}: a top-level module with no rule"


@pytest.mark.parametrize("area", sorted(ALLOWED))
def test_imports_point_the_allowed_way(area: str) -> None:
    allowed = ALLOWED[area]
    wrong = []
    for path in modules():
        if area_of(module_name(path)) != area:
            continue
        for imp in imports(path):
            target = area_of(imp.target)
            if target is None or target == area or target in allowed:
                continue
            rule = ", ".join(sorted(allowed)) or "no other tinyfleet package"
            wrong.append(f"{imp.where()}: imports {imp.target} (tinyfleet.{area} may import {rule})")
    assert not wrong, "imports that point the wrong way:\n" + "\n".join(wrong)


def test_the_import_scanner_sees_every_kind_of_import() -> None:
    code = (
        "from typing import TYPE_CHECKING\n"
        "import tinyfleet.server.app\n"
        "from tinyfleet import demo, __version__\n"
        "from ..server import stack\n"
        "from . import profiles\n"
        "if TYPE_CHECKING:\n"
        "    from tinyfleet.server.devbroker import DevBroker\n"
        "def f():\n"
        "    import importlib\n"
        "    return importlib.import_module('tinyfleet.ml.compress')\n"
    )
    found = sorted((i.line, i.target) for i in imports(PACKAGE / "sim" / "fleet.py", code))
    assert found == [
        (1, "typing"),
        (2, "tinyfleet.server.app"),
        (3, "tinyfleet.__version__"),
        (3, "tinyfleet.demo"),
        (4, "tinyfleet.server"),
        (5, "tinyfleet.sim"),
        (7, "tinyfleet.server.devbroker"),
        (9, "importlib"),
        (10, "tinyfleet.ml.compress"),
    ]
    assert [area_of(t) for _, t in found] == [
        None,
        "server",
        None,
        "demo",
        "server",
        "sim",
        "server",
        None,
        "ml",
    ]


def test_no_two_classes_share_a_name() -> None:
    """One meaning per name: a class name (nested ones included) names one class in the whole package."""
    where: dict[str, list[str]] = defaultdict(list)
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(f"{path.relative_to(REPO)}:{node.lineno}")
    shared = {name: places for name, places in where.items() if len(places) > 1}
    assert not shared, "class names defined more than once:\n" + "\n".join(
        f"{name}: {', '.join(places)}" for name, places in sorted(shared.items())
    )


def test_the_distribution_installs_only_the_tinyfleet_package() -> None:
    from setuptools import find_packages

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    find = config["tool"]["setuptools"]["packages"]["find"]
    assert find == {"include": ["tinyfleet*"]}, find
    packages = find_packages(where=str(REPO), include=find["include"])
    assert {name.split(".")[0] for name in packages} == {"tinyfleet"}, packages
    # a folder of modules without __init__.py would be left out of the wheel without a word
    folders = {module_name(p).rpartition(".")[0] for p in modules() if p.name != "__init__.py"}
    assert folders <= set(packages), f"not installed (no __init__.py?): {sorted(folders - set(packages))}"
