"""What every sandbox offers: run a shell command with a timeout and get a bounded result back."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

WORKDIR = "/workspace"  # where the workspace is mounted inside the container

DOCKER_FIX = (
    "start a Docker daemon (`sudo systemctl start docker`, or as root `dockerd &`), "
    "or point DOCKER_HOST at a running one"
)


class SandboxError(Exception):
    """An expected sandbox failure (no daemon, no image, build failed), said in one line with its fix."""


class ExecResult(BaseModel):
    """The outcome of one command."""

    exit_code: int
    """The command's exit status; 128+N when killed by signal N (137 after a timeout or an OOM kill)."""
    output: str
    """stdout and stderr interleaved as written; head and tail only when it was long."""
    duration: float
    """Seconds from start to the end of its output."""
    timed_out: bool = False
    """The command ran past its timeout and its whole process group was killed."""
    oom_killed: bool = False
    """The kernel killed a process of the command for exceeding the container's memory limit."""
    output_bytes: int = 0
    """How many bytes the command printed in all (more than `output` holds when truncated)."""
    truncated: bool = False
    """The middle of the output was dropped to keep memory bounded."""
    output_limited: bool = False
    """The command was stopped because it printed more than the output limit."""
    cancelled: bool = False
    """The command was stopped on request (the user cancelled the run)."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def summary(self) -> str:
        """One line for the model: how the command ended."""
        if self.timed_out:
            status = f"timed out after {self.duration:.1f} s; its process group was killed"
        elif self.oom_killed:
            status = f"killed: out of memory (exit code {self.exit_code})"
        elif self.cancelled:
            status = "cancelled; its process group was killed"
        elif self.output_limited:
            status = f"stopped: printed more than the output limit ({self.output_bytes} bytes)"
        else:
            status = f"exit code {self.exit_code}"
        return f"{status} ({self.duration:.2f} s)"


@runtime_checkable
class Sandbox(Protocol):
    """Runs commands in an isolated copy of the world where only `workspace` is shared with the host."""

    workspace: Path

    def exec(self, command: str, timeout: float | None = None, env: dict[str, str] | None = None) -> ExecResult:
        """Run `command` with bash in the workspace; never raises for a failing or hanging command."""
        ...

    def cancel(self) -> None:
        """Kill the commands running now (from another thread); their `exec` returns what they printed."""
        ...

    def close(self) -> None:
        """Stop and remove everything the sandbox started."""
        ...
