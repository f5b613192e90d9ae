"""The import rule: ``portspace.model`` does no I/O and has no clock or randomness of its own
(style rule 2); only ``portspace.live`` touches the host."""
from __future__ import annotations

import ast
from pathlib import Path

import portspace

SRC = Path(portspace.__file__).parent
FORBIDDEN_IN_MODEL = {"time", "random", "socket", "subprocess", "pathlib", "shutil", "io", "threading",
                      "select", "datetime", "ctypes", "fcntl", "secrets", "uuid", "portspace.live"}
HOST_MODULES = {"subprocess", "ctypes", "fcntl"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_model_imports_nothing_that_does_io():
    for path in (SRC / "model").glob("*.py"):
        bad = {n for n in _imports(path) if n.split(".")[0] in FORBIDDEN_IN_MODEL or n in FORBIDDEN_IN_MODEL}
        assert not bad, f"{path.name} imports {bad}"


def test_model_uses_os_only_for_strerror():
    for path in (SRC / "model").glob("*.py"):
        tree = ast.parse(path.read_text())
        if "os" not in _imports(path):
            continue
        uses = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name) and n.value.id == "os"}
        assert uses <= {"strerror"}, f"{path.name} uses os.{uses}"


def test_only_live_touches_the_host():
    for path in SRC.rglob("*.py"):
        if "live" in path.relative_to(SRC).parts or "benchmarks" in path.parts:
            continue
        bad = _imports(path) & HOST_MODULES
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"
