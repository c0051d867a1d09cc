"""`read_output`: shows again a tool output that was elided from the context to save room."""

from __future__ import annotations

from typing import ClassVar

from dsagent.agent.conversation import Conversation
from dsagent.tools.base import ToolArgs, ToolError, ToolResult, truncate_middle
from pydantic import Field


class ReadOutputArgs(ToolArgs):
    call_id: str = Field(description="The call id named in the elided output's pointer line.")
    start_line: int | None = Field(None, ge=1, description="First line to show (1-based).")
    end_line: int | None = Field(None, ge=1, description="Last line to show (inclusive).")


class ReadOutputTool:
    name: ClassVar[str] = "read_output"
    description: ClassVar[str] = (
        "Show the full output of an earlier tool call whose output was elided from the context, "
        "optionally only a range of its lines."
    )
    args_model: ClassVar[type[ToolArgs]] = ReadOutputArgs
    mutates: ClassVar[bool] = False

    def __init__(self, conversation: Conversation, max_chars: int = 40_000) -> None:
        self.conversation = conversation
        self.max_chars = max_chars

    def run(self, args: ReadOutputArgs) -> ToolResult:
        output = self.conversation.outputs.get(args.call_id)
        if output is None:
            known = ", ".join(sorted(self.conversation.elided)) or "none"
            raise ToolError(f"no tool output with call_id {args.call_id!r}; elided outputs: {known}")
        lines = output.splitlines()
        start = (args.start_line or 1) - 1
        end = args.end_line or len(lines)
        if start >= len(lines) and lines:
            raise ToolError(f"start_line {args.start_line} is past the end ({len(lines)} lines)")
        shown = "\n".join(f"{number:>6}\t{line}" for number, line in enumerate(lines[start:end], start=start + 1))
        text = truncate_middle(shown, max_lines=max(20, self.max_chars // 60), max_chars=self.max_chars)
        return ToolResult(text=text, data={"call_id": args.call_id, "lines": len(lines)})
