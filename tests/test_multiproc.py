"""Worker processes start from a process whose stderr is a capture with no descriptor, as under the TUI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHILD = """
import multiprocessing, sys
from dsagent.multiproc import start_helpers

class Capture:
    def write(self, text): return len(text)
    def flush(self): pass
    def fileno(self): return -1

def work(queue): queue.put("worked")

if __name__ == "__main__":
    sys.stderr = Capture()  # Textual's print capture while an app runs
    context = multiprocessing.get_context("forkserver")
    if sys.argv[1] == "helpers":
        start_helpers(context)
    try:
        queue = context.Queue()
        process = context.Process(target=work, args=(queue,))
        process.start()
        print(queue.get(timeout=60))
        process.join()
    except Exception as exc:  # stderr is the capture: say it on stdout
        print(f"{type(exc).__name__}: {exc}")
        sys.exit(1)
"""


def run_child(tmp_path: Path, mode: str) -> subprocess.CompletedProcess:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=120)


def test_a_forkserver_process_starts_under_a_captured_stderr(tmp_path: Path) -> None:
    done = run_child(tmp_path, "helpers")
    assert done.returncode == 0 and done.stdout == "worked\n", done.stdout + done.stderr


def test_without_the_helpers_started_it_fails_as_it_did_in_the_tui(tmp_path: Path) -> None:
    # the failure start_helpers exists for; should a Python release fix it, this test says so
    done = run_child(tmp_path, "plain")
    assert done.returncode != 0 and "bad value(s) in fds_to_keep" in done.stdout, done.stdout + done.stderr
