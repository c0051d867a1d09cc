"""Result parsers for runners other than pytest, and pytest's progress lines after a timeout."""

from __future__ import annotations

import json

from dsagent.sandbox.junit import excerpt, parse_progress
from dsagent.sandbox.testrun import parse_cargo, parse_go_json, target_args


def test_go_test_json_events():
    events = [
        {"Action": "run", "Package": "example.com/calc", "Test": "TestAdd"},
        {"Action": "output", "Package": "example.com/calc", "Test": "TestAdd", "Output": "=== RUN   TestAdd\n"},
        {"Action": "pass", "Package": "example.com/calc", "Test": "TestAdd", "Elapsed": 0.01},
        {"Action": "run", "Package": "example.com/calc", "Test": "TestDiv"},
        {"Action": "output", "Package": "example.com/calc", "Test": "TestDiv", "Output": "=== RUN   TestDiv\n"},
        {
            "Action": "output",
            "Package": "example.com/calc",
            "Test": "TestDiv",
            "Output": "    calc_test.go:12: div(9, 3) = 4, want 3\n",
        },
        {"Action": "output", "Package": "example.com/calc", "Test": "TestDiv", "Output": "--- FAIL: TestDiv (0.00s)\n"},
        {"Action": "fail", "Package": "example.com/calc", "Test": "TestDiv", "Elapsed": 0},
        {"Action": "skip", "Package": "example.com/calc", "Test": "TestSlow", "Elapsed": 0},
        {"Action": "fail", "Package": "example.com/calc", "Elapsed": 0.2},
    ]
    output = "\n".join(json.dumps(e) for e in events) + "\nFAIL\n"
    cases = {c.nodeid: c for c in parse_go_json(output)}
    assert {k: c.outcome for k, c in cases.items()} == {
        "example.com/calc.TestAdd": "passed",
        "example.com/calc.TestDiv": "failed",
        "example.com/calc.TestSlow": "skipped",
    }
    assert "calc_test.go:12: div(9, 3) = 4, want 3" in cases["example.com/calc.TestDiv"].excerpt


def test_cargo_libtest_lines():
    output = (
        "running 3 tests\ntest tests::adds ... ok\ntest tests::divides ... FAILED\n"
        "test tests::slow ... ignored\n\ntest result: FAILED. 1 passed; 1 failed; 1 ignored\n"
    )
    assert [(c.nodeid, c.outcome) for c in parse_cargo(output)] == [
        ("tests::adds", "passed"),
        ("tests::divides", "failed"),
        ("tests::slow", "skipped"),
    ]


def test_progress_lines_mark_the_test_that_was_running():
    output = (
        "tests/a.py::test_x PASSED    [ 33%]\ntests/a.py::test_p[a b] FAILED   [ 66%]\ntests/a.py::TestC::test_slow "
    )
    cases = {c.nodeid: c.outcome for c in parse_progress(output, timed_out=True)}
    assert cases == {
        "tests/a.py::test_x": "passed",
        "tests/a.py::test_p[a b]": "failed",
        "tests/a.py::TestC::test_slow": "timeout",
    }


def test_excerpt_keeps_locations_and_e_lines():
    frames = "".join(f"lib/mod.py:{n}: in f{n}\n    f{n + 1}()\nnoise line {n}\nmore noise\n" for n in range(20))
    text = excerpt(frames + "E   ValueError: bad\n", limit=12)
    assert text.splitlines()[-1] == "E   ValueError: bad"
    assert "noise" not in text and len(text.splitlines()) == 12


def test_target_args():
    assert target_args(None) == [] and target_args("  ") == []
    assert target_args("tests/t.py::test_x[a b]") == ["tests/t.py::test_x[a b]"]
    assert target_args("-k 'a and not b'") == ["-k", "a and not b"]
    assert target_args("tests/a.py tests/b.py") == ["tests/a.py", "tests/b.py"]
