"""The tool contract: pydantic argument models, results with text for the model and data for the UI,
and a registry that never lets a tool raise into the agent loop."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ToolArgs(BaseModel):
    """Base of every tool's argument model; its JSON schema is what the model sees."""

    model_config = ConfigDict(extra="forbid")


class ToolResult(BaseModel):
    """What a tool call returns: `text` goes back to the model, `data` to the UI (diffs, matches, tables)."""

    text: str
    ok: bool = True
    data: dict[str, Any] = Field(default_factory=dict)
    timed_out: bool = False
    duration: float = 0.0

    @classmethod
    def error(cls, text: str, **data: Any) -> ToolResult:
        return cls(text=text, ok=False, data=data)


class ToolError(Exception):
    """Raised inside a tool for an expected failure; the registry turns it into an error result."""


@runtime_checkable
class Tool(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    args_model: ClassVar[type[ToolArgs]]
    mutates: ClassVar[bool]  # edits files or runs commands: needs approval under `ask`, refused in read-only

    def run(self, args: ToolArgs) -> ToolResult: ...


def truncate_middle(text: str, max_lines: int = 400, max_chars: int = 40_000) -> str:
    """Keep the head and tail of long output, with a marker saying how much was cut."""
    lines = text.splitlines(keepends=True)
    if len(lines) > max_lines:
        head, tail = max_lines // 2, max_lines - max_lines // 2
        omitted = len(lines) - head - tail
        lines = lines[:head] + [f"… {omitted} lines omitted …\n"] + lines[-tail:]
        text = "".join(lines)
    if len(text) > max_chars:
        half = max_chars // 2
        omitted = text.count("\n", half, len(text) - half)
        text = text[:half] + f"\n… {omitted} lines omitted …\n" + text[-half:]
    return text


class Registry:
    """Tools by name. `call` validates arguments and catches everything a tool might raise."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool) -> None:
        self._tools[tool.name] = tool

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        """OpenAI-style function specs, the form the DSML tools block lists."""
        from dsagent.model.dsml_schema import function_spec

        return [function_spec(tool.name, tool.description, tool.args_model) for tool in self._tools.values()]

    def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        start = time.monotonic()
        result = self._call(name, arguments)
        if not result.duration:
            result.duration = time.monotonic() - start
        return result

    def _call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult.error(f"unknown tool {name!r}; available tools: {', '.join(self._tools)}")
        try:
            args = tool.args_model.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            return ToolResult.error(f"invalid arguments for {name}: {problems}")
        try:
            return tool.run(args)
        except ToolError as exc:
            return ToolResult.error(str(exc))
        except Exception as exc:  # a tool bug must not kill the run; the model sees what happened
            last = traceback.extract_tb(exc.__traceback__)[-1]
            return ToolResult.error(
                f"{name} failed: {type(exc).__name__}: {exc} (at {last.filename}:{last.lineno})"
            )
