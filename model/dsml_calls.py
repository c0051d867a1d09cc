"""One tool call as the DSML parser reads it: its parameters, what is wrong with it, its final event."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from .dsml_encode import to_json
from .dsml_events import ToolCallError, ToolCallFinished
from .dsml_format import DSML_TOKEN
from .dsml_scan import snippet

INVOKE_SYNTAX = f'<{DSML_TOKEN}invoke name="TOOL">'
PARAM_SYNTAX = f'<{DSML_TOKEN}parameter name="NAME" string="true|false">VALUE</{DSML_TOKEN}parameter>'


@dataclass
class ParsedCall:
    index: int
    name: str | None = None  # None: the invoke tag could not be read
    raw: dict[str, tuple[str, bool]] = field(default_factory=dict)  # name -> (text as written, string="true")
    args: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: "call_" + uuid.uuid4().hex[:24])

    def add_param(self, name: str, is_str: bool, raw: str) -> None:
        """Decode one parameter: string="true" is the raw text, string="false" is JSON."""
        value: Any = raw
        if not is_str:
            try:
                value = json.loads(raw)
            except (ValueError, RecursionError):
                self.errors.append(f'parameter {name!r} has string="false" but its value is not JSON: {snippet(raw)}')
        self.raw[name] = (raw, is_str)
        self.args[name] = value

    def check(self, tools: dict[str, list[str]] | None) -> None:
        """Against the tool list (name -> required parameters): unknown tool, missing parameters."""
        if tools is None or self.name is None:
            return
        if self.name not in tools:
            known = ", ".join(tools) or "none"
            self.errors.insert(0, f"there is no tool named {self.name!r} (tools: {known})")
            return
        missing = [p for p in tools[self.name] if p not in self.raw]
        if missing:
            self.errors.append("missing required parameter(s): " + ", ".join(missing))

    def event(self) -> ToolCallFinished | ToolCallError:
        if not self.errors:
            return ToolCallFinished(
                index=self.index, name=self.name or "", arguments=self.args, arguments_json=self.arguments_json()
            )
        who = f"the call to {self.name}" if self.name is not None else "a tool call"
        message = f"{who} was not run: " + "; ".join(self.errors)
        return ToolCallError(index=self.index, name=self.name, message=message)

    def arguments_json(self) -> str:
        if self.errors:
            return to_json(self.args)
        # As the official parser builds it: string values JSON-quoted, other values kept as written.
        items = (f"{to_json(k)}: {to_json(v) if is_str else v}" for k, (v, is_str) in self.raw.items())
        return "{" + ", ".join(items) + "}"

    def openai(self) -> dict[str, Any]:
        function = {"name": self.name or "", "arguments": self.arguments_json()}
        return {"id": self.id, "type": "function", "function": function}


def index_tools(tools: list[dict] | None) -> dict[str, list[str]] | None:
    """Tool name -> required parameter names, from OpenAI function specs (None: accept any call)."""
    if tools is None:
        return None
    index: dict[str, list[str]] = {}
    for tool in tools:
        spec = tool.get("function", tool) if isinstance(tool, dict) else {}
        params = spec.get("parameters") if isinstance(spec, dict) else None
        required = params.get("required", []) if isinstance(params, dict) else []
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            index[spec["name"]] = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
    return index
