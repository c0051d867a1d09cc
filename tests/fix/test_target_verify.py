"""Targets, the source of a test, and the before/after comparison."""

from __future__ import annotations

from pathlib import Path

import pytest
from dsagent.agent.fix_target import TargetError, parse_target, source_of_test
from dsagent.agent.fix_verify import compare
from dsagent.sandbox.junit import TestCase

TESTS = """import pytest


def test_ok():
    assert 1


def test_bad():
    assert [1, 2] == [1, 3]


class TestGroup:
    @pytest.mark.parametrize("n", [1, 2])
    def test_param(self, n):
        assert n == 1

    def test_skip(self):
        pytest.skip("not here")


@pytest.mark.xfail(reason="known")
def test_known():
    assert 0
"""


def test_parse_target(tmp_path: Path) -> None:
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "tests" / "test_x.py").touch()
    (tmp_path / "tests" / "unit" / "test_x.py").touch()
    target = parse_target(" tests/test_x.py::TestA::test_b[1] ", tmp_path)
    assert target.spec == "tests/test_x.py::TestA::test_b[1]" and target.path == "tests/test_x.py"
    assert parse_target(str(tmp_path / "tests" / "test_x.py") + "::t", tmp_path).spec == "tests/test_x.py::t"
    assert parse_target("./tests/", tmp_path).spec == "tests"
    for bad in ("", "   ", "../other/test_x.py", "/elsewhere/test_x.py", "-k foo"):
        with pytest.raises(TargetError):
            parse_target(bad, tmp_path)


def test_a_target_that_is_no_python_test_is_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "x_test.go").write_text("package x\n")
    with pytest.raises(TargetError, match="has no file or folder TestFoo"):
        parse_target("TestFoo", tmp_path)
    with pytest.raises(TargetError, match="not a Python test file: dsagent fix runs pytest.*go test"):
        parse_target("x_test.go", tmp_path)


def test_scope_and_cover(tmp_path: Path) -> None:
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "tests" / "unit" / "test_x.py").touch()
    target = parse_target("tests/unit/test_x.py::test_y", tmp_path)
    assert target.scope_args("file") == ["tests/unit/test_x.py"]
    assert target.scope_args("module") == ["tests/unit"]
    assert target.scope_args("suite") == []
    assert target.covers("tests/unit/test_x.py::test_y") and target.covers("tests/unit/test_x.py::test_y[2]")
    assert not target.covers("tests/unit/test_x.py::test_yz")


def test_source_of_test(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_s.py").write_text(TESTS)
    source = source_of_test(tmp_path, "tests/test_s.py::TestGroup::test_param[2]")
    assert source.startswith("tests/test_s.py:13")
    assert "@pytest.mark.parametrize" in source and "assert n == 1" in source and "test_skip" not in source
    assert source_of_test(tmp_path, "tests/test_s.py::missing") == ""


def result(nodeid: str, outcome: str) -> TestCase:
    return TestCase(nodeid, outcome)  # type: ignore[arg-type]


def test_compare() -> None:
    before = {
        n: result(n, o)
        for n, o in [
            ("t.py::a", "failed"),
            ("t.py::b", "passed"),
            ("t.py::c", "passed"),
            ("t.py::d", "failed"),
            ("t.py::e", "passed"),
        ]
    }
    after = {
        n: result(n, o)
        for n, o in [
            ("t.py::a", "passed"),
            ("t.py::b", "passed"),
            ("t.py::c", "failed"),
            ("t.py::d", "failed"),
            ("t.py::f", "passed"),
        ]
    }
    verification = compare(["t.py::a"], before, after)
    status = {row.test: row.status for row in verification.rows}
    assert status == {
        "t.py::a": "fixed",
        "t.py::b": "ok",
        "t.py::c": "regressed",
        "t.py::d": "still failed",
        "t.py::e": "removed",
        "t.py::f": "new",
    }
    assert verification.rows[0].target and verification.target_passes
    assert [row.test for row in verification.regressions] == ["t.py::c", "t.py::e"]
    assert not verification.ok
    problem = verification.problem({"t.py::c": TestCase("t.py::c", "failed", "boom", "trace of c")})
    assert "now fail: t.py::c (failed), t.py::e (missing)" in problem and "trace of c" in problem


def test_compare_after_a_collection_error_is_fixed() -> None:
    before = {"t.py": result("t.py", "error")}
    after = {"t.py::a": result("t.py::a", "passed")}
    verification = compare(["t.py", "t.py::a"], before, after)
    assert verification.ok
    assert [row.status for row in verification.rows] == ["collects now", "fixed"]
    assert not compare(["t.py"], before, {}).target_passes
