"""finish: the model's way to say the task is done. The agent loop ends the run on it."""

from __future__ import annotations

from typing import ClassVar

from dsagent.tools.base import ToolArgs, ToolResult
from pydantic import Field


class FinishArgs(ToolArgs):
    summary: str = Field(description="What was done and how it was verified, for the user (a few sentences).")


class Finish:
    name: ClassVar[str] = "finish"
    description: ClassVar[str] = (
        "Call when the task is complete (or cannot be completed), with a short summary for the user. Ends the run."
    )
    args_model: ClassVar[type[ToolArgs]] = FinishArgs
    mutates: ClassVar[bool] = False

    def run(self, args: FinishArgs) -> ToolResult:
        return ToolResult(text="Finished.", data={"finished": True, "summary": args.summary.strip()})
