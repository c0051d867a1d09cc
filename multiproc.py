"""Starting worker processes from a process whose stderr is captured (the TUI).

multiprocessing starts its helper processes (the resource tracker, the fork server) on first use and hands
them this process's stderr. While the Textual app runs, sys.stderr is its print capture, whose fileno() is
-1, and that start fails with "bad value(s) in fds_to_keep". `start_helpers` starts them on the real stderr
before any pool or process needs them."""

from __future__ import annotations

import contextlib
import sys


def start_helpers(context) -> None:
    """Start the resource tracker (and the fork server, for a forkserver context) on a real stderr."""
    from multiprocessing import forkserver, resource_tracker

    try:
        captured = sys.stderr is None or sys.stderr.fileno() < 0
    except (AttributeError, OSError, ValueError):
        captured = True
    real = sys.__stderr__
    with contextlib.redirect_stderr(real) if captured and real is not None else contextlib.nullcontext():
        resource_tracker.ensure_running()
        if context.get_start_method() == "forkserver":
            forkserver.ensure_running()
