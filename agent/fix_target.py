"""The TARGET of `dsagent fix`: a pytest node id (`tests/test_x.py::test_y`, `tests/test_x.py::TestA`,
`tests/test_x.py`, or a directory), its verification scope and the source of its tests."""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Scope = Literal["file", "module", "suite"]
EXAMPLE = 'dsagent fix "tests/test_parser.py::test_unicode"'


class TargetError(Exception):
    """TARGET is not usable; one line that says what was expected."""


@dataclass(frozen=True)
class Target:
    spec: str
    """The node id as pytest takes it, relative to the repository root."""
    path: str
    """Its file or directory part."""

    @property
    def is_file(self) -> bool:
        return self.path.endswith(".py")

    def scope_args(self, scope: Scope) -> list[str]:
        """What pytest runs to check the neighbours: the target's file, its folder, or the whole suite."""
        if scope == "suite":
            return []
        if scope == "module" and self.is_file:
            return [os.path.dirname(self.path) or "."]
        return [self.path]

    def covers(self, nodeid: str) -> bool:
        """Is this collected test part of the target?"""
        spec = self.spec.rstrip("/")
        return nodeid == spec or nodeid.startswith((spec + "::", spec + "[", spec + "/"))


def parse_target(spec: str, repo: Path) -> Target:
    """A node id relative to `repo`; absolute paths inside the repository are made relative."""
    text = spec.strip()
    if not text:
        raise TargetError(f"TARGET is empty; give a test node id, e.g. {EXAMPLE}")
    if any(ch.isspace() for ch in text) and "::" not in text:
        raise TargetError(f"TARGET {spec!r} is not a test node id; give one like {EXAMPLE}")
    path, sep, rest = text.partition("::")
    candidate = Path(path)
    if candidate.is_absolute():
        try:
            path = candidate.resolve().relative_to(repo.resolve()).as_posix()
        except ValueError:
            raise TargetError(f"TARGET {spec!r} is outside the repository {repo}") from None
    path = Path(os.path.normpath(path)).as_posix()
    if path.startswith("../") or path == "..":
        raise TargetError(f"TARGET {spec!r} is outside the repository {repo}")
    where = repo / path
    if not where.exists():
        raise TargetError(f"TARGET {spec!r}: the repository has no file or folder {path}; e.g. {EXAMPLE}")
    if where.is_file() and where.suffix != ".py":
        raise TargetError(
            f"TARGET {spec!r} is not a Python test file: dsagent fix runs pytest. For other test runners, "
            f'`dsagent run "make {spec} pass"` runs go test, cargo or npm test (given a sandbox.image that has them)'
        )
    return Target(spec=path + sep + rest, path=path)


def source_of_test(root: Path, nodeid: str, max_lines: int = 80) -> str:
    """The source of the test function (or class) `nodeid` names, decorators included; "" if not found."""
    path, _, names = nodeid.partition("::")
    file = root / path
    if not names or not file.is_file():
        return ""
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
        tree = ast.parse(text)
    except (OSError, SyntaxError, ValueError):
        return ""
    node: ast.AST | None = tree
    for name in names.split("::"):
        name = name.split("[", 1)[0]
        node = next((child for child in ast.iter_child_nodes(node) if getattr(child, "name", None) == name), None)
        if node is None:
            return ""
    lines = text.splitlines()
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    end = min(node.end_lineno or node.lineno, start + max_lines - 1)
    body = "\n".join(f"{number:>4}  {lines[number - 1]}" for number in range(start, end + 1))
    return f"{path}:{start}\n{body}"
