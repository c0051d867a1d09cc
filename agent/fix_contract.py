"""The test contract of `dsagent fix`: a fix makes the test pass by changing the code, not the test.

Two rules. (1) The files that define the target, every `conftest.py` and the test configuration are
read-only unless the user passes `--allow-test-edits`. (2) Whatever is allowed, a change that adds a
skip or an xfail (anywhere), or deletes assertions from a test file, is rejected. Both are checked on
the patch itself, so it does not matter which tool made the change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# File name -> the section that makes it pytest configuration (None: always configuration).
CONFIG_FILES: dict[str, str | None] = {
    "pytest.ini": None,
    ".pytest.ini": None,
    "tox.ini": "[pytest]",
    "setup.cfg": "[tool:pytest]",
    "pyproject.toml": "[tool.pytest",
}
SKIP_PATTERNS = [
    re.compile(r"pytest\.mark\.(skip|skipif|xfail)\b"),
    re.compile(r"\bpytest\.(skip|xfail|importorskip)\s*\("),
    re.compile(r"\bunittest\.(skip|skipIf|skipUnless|expectedFailure)\b"),
    re.compile(r"@(skip|skipIf|skipUnless|expectedFailure|xfail)\b"),
    re.compile(r"\.skipTest\s*\("),
    re.compile(r"\bSkipTest\b"),
    re.compile(r"^\s*pytestmark\s*="),
    re.compile(r"\b__test__\s*=\s*False\b"),
    re.compile(r"(--deselect|--ignore(-glob)?=|\bcollect_ignore\b)"),
]
ASSERTION = re.compile(r"^\s*assert\b|\bself\.assert\w*\s*\(|\bpytest\.(raises|warns|approx)\b")


@dataclass(frozen=True)
class Violation:
    path: str
    rule: str
    """`protected` (a read-only file changed), `skip` (a skip/xfail added), `assertions` (asserts deleted)."""
    detail: str
    line: int | None = None

    def describe(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.detail}"


@dataclass
class FileDiff:
    path: str
    added: list[tuple[int, str]]
    """(line number in the new file, text) of every added line."""
    removed: list[str]


def is_test_file(rel: str) -> bool:
    path = PurePosixPath(rel)
    name = path.name
    return (
        name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py"
        or any(part in ("tests", "test", "testing") for part in path.parts[:-1])
    )


class TestContract:
    __test__ = False  # not a pytest test class, whatever the name says

    def __init__(self, root: Path, target_files: Iterable[str], allow_test_edits: bool = False) -> None:
        self.root = Path(root)
        self.target_files = sorted(set(target_files))
        self.allow_test_edits = allow_test_edits
        self.config_files = sorted(self._config_files())

    def _config_files(self) -> set[str]:
        found = set()
        for name, section in CONFIG_FILES.items():
            path = self.root / name
            if path.is_file() and (section is None or section in path.read_text(encoding="utf-8", errors="replace")):
                found.add(name)
        return found

    def protected_reason(self, rel: str) -> str | None:
        """Why `rel` may not be changed, or None when it may."""
        if self.allow_test_edits:
            return None
        rel = PurePosixPath(rel).as_posix()
        if rel in self.target_files:
            what = "it defines the failing test"
        elif PurePosixPath(rel).name == "conftest.py":
            what = "it is a conftest.py (test fixtures and hooks)"
        elif rel in self.config_files:
            what = "it is test configuration"
        else:
            return None
        return (
            f"{rel} is read-only in this fix: {what}. The test states the expected behaviour, so fix the code "
            "under test instead (the user can allow test edits with --allow-test-edits)."
        )

    def check_patch(self, diff: str) -> list[Violation]:
        """Every way the patch breaks the contract (empty when it keeps it)."""
        found: list[Violation] = []
        for file in parse_diff(diff):
            if self.protected_reason(file.path):
                found.append(
                    Violation(
                        file.path,
                        "protected",
                        "changes a read-only file (the test, a conftest.py or the test configuration)",
                    )
                )
            for number, text in file.added:
                if any(pattern.search(text) for pattern in SKIP_PATTERNS):
                    found.append(Violation(file.path, "skip", f"adds a skip/xfail: {text.strip()[:100]}", number))
            if is_test_file(file.path):
                lost = sum(bool(ASSERTION.search(t)) for t in file.removed) - sum(
                    bool(ASSERTION.search(t)) for _, t in file.added
                )
                if lost > 0:
                    found.append(Violation(file.path, "assertions", f"deletes {lost} assertion(s)"))
        return found

    def rules(self) -> str:
        """The contract as the model is told it."""
        if self.allow_test_edits:
            read_only = (
                "The user allowed test edits (--allow-test-edits): you may change test files if the test "
                "itself is wrong, and say why in your summary."
            )
        else:
            files = ", ".join(self.target_files + self.config_files) or "(none)"
            read_only = (
                f"These files are read-only: {files}, and every conftest.py. The failing test defines the "
                "expected behaviour; edits to them are refused."
            )
        return (
            f"{read_only}\nWhatever you change, adding a skip or an xfail (pytest.mark.skip/skipif/xfail, "
            "pytest.skip(), unittest.skip, ...) or deleting assertions is rejected: the test must pass because "
            "the code is right, not because the check was removed."
        )


def explain(violations: list[Violation]) -> str:
    lines = [f"- {violation.describe()}" for violation in violations]
    return (
        "the change breaks the test contract of this fix:\n"
        + "\n".join(lines)
        + "\nUndo those changes and fix the code under test instead."
    )


_HEADER = re.compile(r"^diff --git a/(.*) b/(.*)$")
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def parse_diff(diff: str) -> list[FileDiff]:
    """Added and removed lines of each file of a git patch."""
    files: list[FileDiff] = []
    current: FileDiff | None = None
    line_no = 0
    in_hunk = False
    for raw in diff.splitlines():
        header = _HEADER.match(raw)
        if header:
            current = FileDiff(header.group(2), [], [])
            files.append(current)
            in_hunk = False
            continue
        hunk = _HUNK.match(raw)
        if hunk and current is not None:
            line_no, in_hunk = int(hunk.group(1)), True
            continue
        if current is None or not in_hunk:
            continue
        if raw.startswith("+"):
            current.added.append((line_no, raw[1:]))
            line_no += 1
        elif raw.startswith("-"):
            current.removed.append(raw[1:])
        elif raw.startswith(" "):
            line_no += 1
    return files
