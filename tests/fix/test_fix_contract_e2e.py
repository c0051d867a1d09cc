"""The test contract and the exit codes, through `dsagent fix` with scripted sessions."""

from __future__ import annotations

import pytest

TARGET = "tests/test_pages.py::test_first_page"
FIX = {
    "path": "pagination/pages.py",
    "old_string": "    start = page * per_page\n",
    "new_string": "    start = (page - 1) * per_page\n",
}
EDIT_TEST = {"path": "tests/test_pages.py", "old_string": "== list(range(10))", "new_string": "== list(range(10, 20))"}
ADD_SKIP = {
    "path": "tests/test_pages.py",
    "old_string": "def test_first_page():",
    "new_string": "@pytest.mark.skip(reason='flaky')\ndef test_first_page():",
}
FINISH = {"summary": "done"}


def changed_files(run) -> list[str]:
    return run.one("patch")["files"]


def tool_results(run, name: str) -> list[dict]:
    return [e for e in run.of("tool_call_finished") if e["name"] == name]


@pytest.mark.docker
@pytest.mark.slow
def test_editing_the_test_is_refused(example_repo, write_script, dsagent_fix, sandbox_image) -> None:
    repo = example_repo("pagination")
    script = write_script(("edit_file", EDIT_TEST), ("edit_file", FIX), ("finish", FINISH))
    run = dsagent_fix(TARGET, "--repo", repo, "--model", f"scripted:{script}", "--headless")
    refused, fixed = tool_results(run, "edit_file")
    assert not refused["ok"] and "read-only" in refused["output"] and "--allow-test-edits" in refused["output"]
    assert fixed["ok"]
    assert run.code == 0 and changed_files(run) == ["pagination/pages.py"]


@pytest.mark.docker
@pytest.mark.slow
def test_editing_the_test_is_allowed_with_the_flag(example_repo, write_script, dsagent_fix, sandbox_image) -> None:
    repo = example_repo("pagination")
    script = write_script(("edit_file", EDIT_TEST), ("finish", FINISH))
    run = dsagent_fix(TARGET, "--repo", repo, "--model", f"scripted:{script}", "--headless", "--allow-test-edits")
    assert run.code == 0, run.stderr[-2000:]
    assert changed_files(run) == ["tests/test_pages.py"]


@pytest.mark.docker
@pytest.mark.slow
def test_a_skip_is_rejected_and_a_regression_is_exit_1(
    example_repo, write_script, dsagent_fix, sandbox_image, tmp_path
) -> None:
    repo = example_repo("pagination")
    sed = "sed -i 's/^def test_first_page/@pytest.mark.xfail\\ndef test_first_page/' tests/test_pages.py"
    # Fixes the target but drops the range check, so the neighbour test_out_of_range starts failing.
    breaking = {"path": "pagination/pages.py", "old_string": FIX["old_string"], "new_string": FIX["new_string"]}
    unchecked = {
        "path": "pagination/pages.py",
        "old_string": "    if page < 1 or page > page_count(len(items), "
        'per_page):\n        raise IndexError(f"page {page} out of range")\n',
        "new_string": "",
    }
    script = write_script(
        ("edit_file", ADD_SKIP),
        ("run_shell", {"command": sed}),
        ("finish", FINISH),
        ("edit_file", breaking),
        ("edit_file", unchecked),
        ("finish", FINISH),
    )
    run = dsagent_fix(
        TARGET,
        "--repo",
        repo,
        "--model",
        f"scripted:{script}",
        "--headless",
        "--allow-test-edits",
        "--patch",
        tmp_path / "p.patch",
    )
    skip, fix, unchecked_edit = tool_results(run, "edit_file")
    assert not skip["ok"] and "adds a skip/xfail" in skip["output"] and "undone" in skip["output"]
    assert fix["ok"] and unchecked_edit["ok"]
    [shell] = tool_results(run, "run_shell")
    assert "adds a skip/xfail" in shell["output"] and "undone" in shell["output"]
    still_failing, regressed = tool_results(run, "finish")
    assert not still_failing["ok"] and "the target still fails" in still_failing["output"]
    assert not regressed["ok"] and "now fail: tests/test_pages.py::test_out_of_range" in regressed["output"]
    verified = run.one("fix_verified")
    assert verified["target_passes"] and verified["regressions"] == ["tests/test_pages.py::test_out_of_range"]
    finished = run.one("fix_finished")
    assert (run.code, finished["outcome"], finished["exit_code"]) == (1, "not_fixed", 1)
    patch = (tmp_path / "p.patch").read_text()
    assert "pytest.mark" not in patch and "tests/test_pages.py" not in patch and "(page - 1)" in patch


@pytest.mark.docker
def test_already_passing_exits_0_without_the_model(example_repo, dsagent_fix, sandbox_image, tmp_path) -> None:
    repo = example_repo("pagination")
    # The model file exists (the preflight checks that much) but is no script: starting the backend would fail.
    broken = tmp_path / "broken.jsonl"
    broken.write_text("not a script\n")
    run = dsagent_fix(
        "tests/test_pages.py::test_page_count", "--repo", repo, "--model", f"scripted:{broken}", "--headless"
    )
    assert run.code == 0, run.stderr
    assert run.one("fix_reproduced")["status"] == "passing"
    assert run.one("fix_finished")["outcome"] == "already_passing"
    assert not run.of("session_started") and not run.of("step_started")
    assert "already passes" in run.stderr


@pytest.mark.docker
def test_unknown_target_exits_2_with_one_line(example_repo, dsagent_fix, sandbox_image, tmp_path) -> None:
    repo = example_repo("pagination")
    (tmp_path / "x.jsonl").touch()
    run = dsagent_fix("tests/test_pages.py::test_nope", "--repo", repo, "--model", f"scripted:{tmp_path}/x.jsonl")
    assert run.code == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: tests/test_pages.py::test_nope matches no")
    assert "Traceback" not in run.stdout + run.stderr


def test_usage_errors_exit_2(git_repo, dsagent_fix) -> None:
    run = dsagent_fix("t.py::x", "--repo", git_repo, "--apply", "--branch", "b", "--model", "scripted:x")
    assert run.code == 2 and run.stderr.count("\n") == 1 and "--apply and --branch" in run.stderr
    run = dsagent_fix("t.py::x", "--repo", git_repo, "--verify", "everything", "--model", "scripted:x")
    assert run.code == 2 and "--verify" in run.stderr


def test_a_model_that_is_not_there_stops_before_the_sandbox(git_repo, dsagent_fix, tmp_path) -> None:
    # No Docker daemon answers here: only a check made before the sandbox starts can give this answer.
    no_docker = {"DOCKER_HOST": f"unix://{tmp_path}/missing.sock"}
    for spec, detail in (
        (f"scripted:{tmp_path / 'absent.jsonl'}", f"{tmp_path / 'absent.jsonl'}: no such file"),
        (f"local:{tmp_path}", f"{tmp_path}: no config.json"),
        ("openai:localhost:8000", "localhost:8000: not an http(s) URL"),
    ):
        run = dsagent_fix("t.py::x", "--repo", git_repo, "--model", spec, env=no_docker)
        assert run.code == 2 and run.stderr.count("\n") == 1, run.stderr
        assert run.stderr.startswith(f"error: --model: {detail}; "), run.stderr
    run = dsagent_fix("t.py::x", "--repo", git_repo, "--model", f"local:{tmp_path}", "--headless", env=no_docker)
    assert run.code == 2 and run.one("fix_finished")["outcome"] == "usage_error"


def test_no_docker_exits_3(example_repo, dsagent_fix, tmp_path) -> None:
    repo = example_repo("pagination")
    script = tmp_path / "script.jsonl"
    script.touch()
    run = dsagent_fix(
        TARGET,
        "--repo",
        repo,
        "--model",
        f"scripted:{script}",
        "--headless",
        env={"DOCKER_HOST": f"unix://{tmp_path}/missing.sock"},
    )
    assert run.code == 3
    finished = run.one("fix_finished")
    assert finished["outcome"] == "environment_error" and "Docker daemon" in finished["message"]


@pytest.mark.docker
@pytest.mark.slow
def test_step_limit_exits_4(examples, example_repo, dsagent_fix, sandbox_image) -> None:
    example = examples["pagination"]
    run = dsagent_fix(
        example.target,
        "--repo",
        example_repo("pagination"),
        "--model",
        f"scripted:{example.script}",
        "--set",
        "agent.max_steps=1",
        env={"CI": "true"},
    )  # CI=true implies --headless
    assert run.code == 4, run.stderr[-2000:]
    assert run.one("turn_finished")["reason"] == "max_steps"
    assert run.one("fix_finished")["outcome"] == "limit"
