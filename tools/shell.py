"""run_shell: any bash command, run in the session's sandbox container."""

from __future__ import annotations

from typing import Any, ClassVar

from dsagent.sandbox.base import SandboxError
from dsagent.tools.base import ToolArgs, ToolResult, truncate_middle
from pydantic import Field


class RunShellArgs(ToolArgs):
    command: str = Field(min_length=1, description="The bash command line, run in the repository root.")
    timeout: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="Seconds before the command's whole process group is killed. "
        "Default: the sandbox's command timeout (300 s unless configured).",
    )


class RunShell:
    name: ClassVar[str] = "run_shell"
    description: ClassVar[str] = (
        "Run a bash command in the sandbox: a container with the repository at /workspace (the working "
        "directory), no network, stdin closed and CI=true. Returns the exit code and the combined output "
        "(head and tail when long). Processes it starts in the background end with it. Use run_tests for tests."
    )
    args_model: ClassVar[type[ToolArgs]] = RunShellArgs
    mutates: ClassVar[bool] = True

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox

    def run(self, args: RunShellArgs) -> ToolResult:
        try:
            result = self.sandbox.exec(args.command, timeout=args.timeout)
        except SandboxError as exc:
            return ToolResult.error(f"the sandbox is unavailable: {exc}")
        output = truncate_middle(result.output.rstrip("\n")) if result.output.strip() else "(no output)"
        return ToolResult(
            text=f"{output}\n[{result.summary()}]",
            ok=result.ok,
            timed_out=result.timed_out,
            duration=result.duration,
            data={
                "command": args.command,
                "exit_code": result.exit_code,
                "oom_killed": result.oom_killed,
                "output_bytes": result.output_bytes,
                "truncated": result.truncated,
            },
        )

    def cancel(self) -> None:
        """Kill the running command's process group (the agent's stop button)."""
        self.sandbox.cancel()
