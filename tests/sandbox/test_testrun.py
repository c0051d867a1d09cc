"""run_tests on a real project in the sandbox: every kind of outcome, reported per test."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from dsagent.config import SandboxSettings
from dsagent.sandbox.container import DockerSandbox
from dsagent.sandbox.testrun import run_tests
from dsagent.tools.base import Registry
from dsagent.tools.tests import RunTests

pytestmark = pytest.mark.docker

PROJECT = {
    "pyproject.toml": """
        [project]
        name = "calc"
        version = "0.1.0"
        """,
    "calc/__init__.py": """
        def add(a, b):
            return a + b

        def div(a, b):
            return a // b
        """,
    "tests/test_pass.py": """
        from calc import add

        def test_add():
            assert add(2, 3) == 5
        """,
    "tests/test_fail.py": """
        from calc import add

        def helper(x):
            return add(x, x)

        def test_double():
            assert helper(2) == 5, "doubling is off"
        """,
    "tests/test_broken.py": """
        import not_a_module_anywhere

        def test_never():
            pass
        """,
    "tests/test_skip.py": """
        import pytest

        @pytest.mark.skip(reason="not on this platform")
        def test_skipped():
            pass
        """,
    "tests/test_flaky.py": """
        from pathlib import Path

        MARK = Path("/tmp/flaky-ran-once")

        def test_sometimes():
            first = not MARK.exists()
            MARK.touch()
            assert not first, "first run fails"
        """,
    "tests/test_params.py": """
        import pytest
        from calc import div

        @pytest.mark.parametrize("a,b,q", [(4, 2, 2), (9, 3, 4)])
        def test_div(a, b, q):
            assert div(a, b) == q

        @pytest.mark.parametrize("words", ["a b", "c"])
        def test_words(words):
            assert words

        class TestGroup:
            def test_member(self):
                assert True
        """,
    "slow/test_slow.py": """
        import time

        def test_quick():
            pass

        def test_hangs():
            time.sleep(600)
        """,
}


@pytest.fixture(scope="module")
def project(sandbox_image: str, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("calc")
    for rel, text in PROJECT.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    settings = SandboxSettings(command_timeout=120)
    with DockerSandbox(root, settings, image=sandbox_image) as sandbox:
        yield sandbox, settings


def outcomes(run) -> dict[str, str]:
    return {case.nodeid: case.outcome for case in run.cases}


def test_whole_suite_reports_each_kind(project):
    sandbox, settings = project
    run = run_tests(sandbox, settings, "tests")
    got = outcomes(run)
    assert got["tests/test_pass.py::test_add"] == "passed"
    assert got["tests/test_fail.py::test_double"] == "failed"  # failed again on the re-run
    assert got["tests/test_broken.py"] == "error"
    assert got["tests/test_skip.py::test_skipped"] == "skipped"
    assert got["tests/test_flaky.py::test_sometimes"] == "flaky"
    assert got["tests/test_params.py::test_div[9-3-4]"] == "failed"
    assert got["tests/test_params.py::TestGroup::test_member"] == "passed"
    assert run.counts == {"passed": 5, "failed": 2, "error": 1, "skipped": 1, "flaky": 1}
    assert not run.ok and not run.timed_out
    cases = {case.nodeid: case for case in run.cases}
    failure = cases["tests/test_fail.py::test_double"]
    assert "doubling is off" in failure.message
    assert "assert helper(2) == 5" in failure.excerpt and "E " in failure.excerpt
    broken = cases["tests/test_broken.py"]
    assert "not_a_module_anywhere" in broken.message
    assert cases["tests/test_skip.py::test_skipped"].message.endswith("not on this platform")
    assert not list(sandbox.workspace.rglob("*.xml")) and not list(sandbox.workspace.rglob("__pycache__"))


@pytest.mark.parametrize(
    "target, expected",
    [
        ("tests/test_params.py::test_div[4-2-2]", {"tests/test_params.py::test_div[4-2-2]": "passed"}),
        ("tests/test_params.py::test_words[a b]", {"tests/test_params.py::test_words[a b]": "passed"}),
        ("tests/test_params.py -k 'div and 2'", {"tests/test_params.py::test_div[4-2-2]": "passed"}),
        (
            "tests/test_pass.py tests/test_skip.py",
            {"tests/test_pass.py::test_add": "passed", "tests/test_skip.py::test_skipped": "skipped"},
        ),
    ],
)
def test_targets(project, target, expected):
    sandbox, settings = project
    run = run_tests(sandbox, settings, target)
    assert outcomes(run) == expected
    assert run.ok


@pytest.mark.slow
def test_timeout_reports_the_running_test(project):
    sandbox, settings = project
    run = run_tests(sandbox, settings, "slow", timeout=8)
    assert run.timed_out and not run.ok
    assert outcomes(run) == {"slow/test_slow.py::test_quick": "passed", "slow/test_slow.py::test_hangs": "timeout"}
    assert "sleep 600" not in " ".join(sandbox.exec("cat /proc/[0-9]*/cmdline | tr '\\0' ' '").output.split("\n"))


def test_target_matching_nothing(project):
    sandbox, settings = project
    run = run_tests(sandbox, settings, "tests/test_pass.py::test_missing")
    assert not run.ok and run.cases == []
    assert run.exit_code == 4


def test_run_tests_tool_result(project):
    sandbox, settings = project
    registry = Registry([RunTests(sandbox, settings)])
    result = registry.call("run_tests", {"target": "tests/test_fail.py"})
    assert not result.ok
    assert result.text.startswith("pytest: 1 failed")
    assert "FAILED tests/test_fail.py::test_double - AssertionError: doubling is off" in result.text
    assert result.data["tests"] == [
        {
            "name": "tests/test_fail.py::test_double",
            "outcome": "failed",
            "message": result.data["tests"][0]["message"],
            "excerpt": result.data["tests"][0]["excerpt"],
            "duration": result.data["tests"][0]["duration"],
        }
    ]
    assert result.data["counts"] == {"failed": 1}
    bad = registry.call("run_tests", {"timeout": -1})
    assert not bad.ok and "timeout" in bad.text


def test_configured_command(project):
    sandbox, _ = project
    settings = SandboxSettings(test_command="python3 -m pytest -x")
    run = run_tests(sandbox, settings, "tests/test_pass.py")
    assert run.command.startswith("python3 -m pytest -x") and outcomes(run) == {
        "tests/test_pass.py::test_add": "passed"
    }


def test_detects_python_first(tmp_path: Path):
    from dsagent.sandbox.testrun import detect_runner

    (tmp_path / "go.mod").write_text("module x\n")
    assert detect_runner(tmp_path) == "go"
    (tmp_path / "conftest.py").write_text("")
    assert detect_runner(tmp_path) == "pytest"


def test_a_runner_missing_from_the_image_is_named(sandbox_image: str, tmp_path: Path):
    (tmp_path / "go.mod").write_text("module x\n\ngo 1.21\n")
    (tmp_path / "x_test.go").write_text('package x\n\nimport "testing"\n\nfunc TestX(t *testing.T) {}\n')
    with DockerSandbox(tmp_path, SandboxSettings(), image=sandbox_image) as sandbox:
        run = run_tests(sandbox, sandbox.settings)
    assert run.runner == "go" and run.exit_code == 127 and not run.ok
    assert run.note.startswith("the sandbox image has no `go`; set sandbox.image")
