"""Test results: one record per test, read from a pytest JUnit XML report (or, when the run was cut
short and wrote none, from pytest's verbose progress lines)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

EXCERPT_LINES = 30


@dataclass
class TestCase:
    __test__ = False  # a result, not a pytest test class

    nodeid: str
    outcome: str  # passed | failed | error | skipped | xfailed | xpassed | flaky | timeout
    message: str = ""
    """One line: the assertion or exception, the skip reason."""
    excerpt: str = ""
    """The relevant traceback lines (locations, source, the `E` lines)."""
    duration: float = 0.0


def nodeid_of(file: str, classname: str, name: str) -> str:
    """Rebuild `path::Class::test[param]` from xunit1's file, dotted classname and name."""
    if not classname:  # a collection error: the name is the module's dotted path
        return file or name.replace(".", "/") + ".py"
    module = file[:-3].replace("/", ".") if file.endswith(".py") else ""
    parts = [file or classname.replace(".", "/") + ".py"]
    if module and classname.startswith(module + "."):
        parts.extend(classname[len(module) + 1 :].split("."))
    parts.append(name)
    return "::".join(parts)


def parse_junit(text: str) -> list[TestCase]:
    """Every <testcase> of a report written with `-o junit_family=xunit1`; raises ValueError if unreadable."""
    start = text.find("<")
    if start < 0:
        raise ValueError("empty JUnit report")
    try:
        root = ET.fromstring(text[start:])
    except ET.ParseError as exc:
        raise ValueError(f"unreadable JUnit report: {exc}") from None
    cases = []
    for case in root.iter("testcase"):
        nodeid = nodeid_of(case.get("file") or "", case.get("classname") or "", case.get("name") or "")
        cases.append(_case(nodeid, case))
    return cases


def _case(nodeid: str, case: ET.Element) -> TestCase:
    duration = float(case.get("time") or 0.0)
    for tag, outcome in (("failure", "failed"), ("error", "error")):
        found = case.find(tag)
        if found is not None:
            detail = found.text or ""
            message = first_error_line(detail) or found.get("message") or ""
            if found.get("message", "").startswith("[XPASS(strict)]"):
                outcome, message = "xpassed", found.get("message", "")
            return TestCase(nodeid, outcome, message.strip(), excerpt(detail), duration)
    skipped = case.find("skipped")
    if skipped is not None:
        outcome = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
        return TestCase(nodeid, outcome, (skipped.get("message") or "").strip(), "", duration)
    return TestCase(nodeid, "passed", "", "", duration)


def first_error_line(detail: str) -> str:
    """The first `E   ...` line of a pytest traceback, without the marker."""
    for line in detail.splitlines():
        if line.startswith("E "):
            return line[1:].strip()
    return ""


LOCATION = re.compile(r"^\S.*:\d+: ")  # tests/test_x.py:12: in test_y / AssertionError


def excerpt(detail: str, limit: int = EXCERPT_LINES) -> str:
    """The lines of a short traceback worth reading: where it failed, the source line, the E lines."""
    lines = [line.rstrip() for line in detail.strip().splitlines()]
    if len(lines) <= limit:
        return "\n".join(lines)
    keep = []
    for index, line in enumerate(lines):
        after_location = index > 0 and LOCATION.match(lines[index - 1]) is not None
        if line.startswith("E ") or LOCATION.match(line) or after_location or line.startswith(">"):
            keep.append(line)
    return "\n".join(keep[-limit:])


# `tests/test_x.py::test_y[a-b] PASSED   [ 50%]` (pytest -v); the node id is printed before the test runs.
PROGRESS = re.compile(
    r"^(?P<nodeid>[^\s:]+(?:::[^\s\[:]+)+(?:\[.*?\])?)(?:\s+(?P<status>PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b.*|\s.*)?$"
)
VERBOSE_OUTCOMES = {
    "PASSED": "passed",
    "FAILED": "failed",
    "ERROR": "error",
    "SKIPPED": "skipped",
    "XFAIL": "xfailed",
    "XPASS": "xpassed",
}


def parse_progress(output: str, timed_out: bool) -> list[TestCase]:
    """Outcomes from `pytest -v` lines; with `timed_out`, the test still running is marked `timeout`."""
    cases: dict[str, TestCase] = {}
    running = None
    for line in output.splitlines():
        found = PROGRESS.match(line.rstrip())
        if not found:
            continue
        nodeid, status = found.group("nodeid").strip(), found.group("status")
        if status:
            cases[nodeid] = TestCase(nodeid, VERBOSE_OUTCOMES[status])
            running = None
        elif nodeid not in cases:
            running = nodeid
    if timed_out and running:
        cases[running] = TestCase(running, "timeout", "the run's timeout expired while this test was running")
    return list(cases.values())
