"""Sandbox round trips: a command in the warm session container vs `docker run` per command, and a
pytest target through run_tests vs pytest on the host. Writes bench/results/sandbox.md.

    python bench/sandbox.py [--runs 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from dsagent.config import SandboxSettings
from dsagent.sandbox.container import DockerSandbox
from dsagent.sandbox.daemon import connect
from dsagent.sandbox.testrun import run_tests

RESULTS = Path(__file__).parent / "results" / "sandbox.md"
TESTS = 40  # tests in the pytest project


def timed(fn, runs: int) -> list[float]:
    fn()  # warm up
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def make_project(root: Path) -> None:
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("def square(x):\n    return x * x\n")
    (root / "tests").mkdir()
    body = "".join(f"def test_square_{i}():\n    assert square({i}) == {i * i}\n\n" for i in range(TESTS))
    (root / "tests" / "test_square.py").write_text("from pkg import square\n\n" + body)
    (root / "pyproject.toml").write_text('[project]\nname = "pkg"\nversion = "0"\n')


def docker_run_once(client, image: str) -> None:
    """The alternative design: a fresh container per command, same lock-down options."""
    client.containers.run(
        image,
        ["true"],
        remove=True,
        network_mode="none",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        read_only=True,
        init=True,
        user=f"{os.getuid()}",
    )


def row(name: str, samples: list[float], target: str = "", met: str = "") -> str:
    median = statistics.median(samples)
    p90 = sorted(samples)[int(0.9 * (len(samples) - 1))]
    return f"| {name} | {median:.0f} ms | {p90:.0f} ms | {min(samples):.0f} ms | {len(samples)} | {target} | {met} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    client = connect()
    settings = SandboxSettings()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_project(root)
        with DockerSandbox(root, settings) as box:
            start = time.perf_counter()
            DockerSandbox(root, settings).start().close()
            container_start = (time.perf_counter() - start) * 1000
            warm = timed(lambda: box.exec("true"), args.runs)
            with DockerSandbox(root, settings, use_server=False) as plain:
                per_exec = timed(lambda: plain.exec("true"), args.runs)
            cold = timed(lambda: docker_run_once(client, settings.image), max(5, args.runs // 5))
            target = "tests/test_square.py"
            tool = timed(lambda: run_tests(box, settings, target), 7)
            inside = timed(lambda: box.exec(f"python3 -m pytest -q -p no:cacheprovider {target}"), 7)
            bare = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # like the image: no plugins
            host_argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", target]
            host = timed(lambda: subprocess.run(host_argv, cwd=root, capture_output=True, check=True, env=bare), 7)
    warm_met = "yes" if statistics.median(warm) <= 100 else "no"
    lines = [
        "# Sandbox round trips",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Device: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Docker {client.version().get('Version')}, kernel {platform.release()}; load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (a shared machine)",
        f"- Command: `python bench/sandbox.py --runs {args.runs}`",
        f"- Image: {settings.image}; container limits from the default settings; pytest project of {TESTS} tests",
        "",
        "| measurement | median | p90 | min | runs | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        row("`true` in the warm session container (command server)", warm, "<= 100 ms", warm_met),
        row("`true` in a warm container, one `docker exec` each (fallback path)", per_exec),
        row("`true` with `docker run --rm` per command", cold),
        row(f"run_tests `{target}` (JUnit report read back)", tool),
        row(f"pytest `{target}` as one exec in the container", inside),
        row(f"pytest `{target}` on the host (no container, plugin autoload off)", host),
        "",
        f"Starting a session container (create + start, then remove) took {container_start:.0f} ms once.",
        "run_tests costs two commands (pytest, then reading the JUnit report back) on top of pytest itself.",
        f"Host: Python {platform.python_version()} from the dsagent virtualenv; image: Debian's Python and pytest.",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
