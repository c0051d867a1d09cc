"""Pydantic argument models -> the compact JSON schemas the DSML tools block lists."""

from __future__ import annotations

import json
from typing import Literal

from dsagent.model.dsml import StreamParser, ToolCallError, function_spec, schema_from_model, tool_schemas_block
from pydantic import BaseModel, ConfigDict, Field


class Range(BaseModel):
    start: int = Field(description="First line, 1-based")
    end: int | None = Field(None, description="Last line; unset reads to the end")


class SearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="What to look for")
    kind: Literal["definition", "reference", "text"] = Field("definition", description="Kind of match")
    path: str | None = Field(None, description="Only under this path")
    lines: Range | None = None
    tags: list[str] = Field(default_factory=list, description="Labels")


def test_schema_is_compact_and_ordered_like_the_official_example():
    assert schema_from_model(SearchArgs) == {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to look for"},
            "kind": {
                "type": "string",
                "description": "Kind of match",
                "enum": ["definition", "reference", "text"],
                "default": "definition",
            },
            "path": {"type": "string", "description": "Only under this path"},
            "lines": {
                "type": "object",
                "properties": {
                    "start": {"type": "integer", "description": "First line, 1-based"},
                    "end": {"type": "integer", "description": "Last line; unset reads to the end"},
                },
                "required": ["start"],
            },
            "tags": {"type": "array", "description": "Labels", "items": {"type": "string"}},
        },
        "required": ["query"],
    }
    first_keys = list(schema_from_model(SearchArgs))
    assert first_keys == ["type", "properties", "required"]


def test_function_spec_lists_as_one_line_in_the_tools_block():
    spec = function_spec("search_code", "Search the code", SearchArgs)
    block = tool_schemas_block([spec])
    line = block.split("<functions>\n")[1].removesuffix("</functions>\n")
    assert line.count("\n") == 1 and line.startswith('{"name": "search_code", "description": "Search the code", ')
    assert json.loads(line) == spec["function"]
    assert "title" not in line and "$ref" not in line and "null" not in line


def test_required_parameters_from_the_schema_are_enforced():
    parser = StreamParser([function_spec("search_code", "Search", SearchArgs)], thinking=False)
    text = '\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="search_code">\n'
    text += "</｜DSML｜invoke>\n</｜DSML｜function_calls>"
    events = parser.feed(text) + parser.finish()
    (error,) = [e for e in events if isinstance(e, ToolCallError)]
    assert error.message == "the call to search_code was not run: missing required parameter(s): query"


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


def test_recursive_models_stop_at_the_first_repeat():
    schema = schema_from_model(Tree)
    assert schema["properties"]["children"] == {"type": "array", "items": {"type": "object"}, "default": []}


def test_the_tool_registry_lists_compact_schemas():
    from typing import ClassVar

    from dsagent.tools.base import Registry, ToolArgs, ToolResult

    class EchoArgs(ToolArgs):
        text: str = Field(description="What to say")
        times: int | None = Field(None, description="How often")

    class Echo:
        name: ClassVar[str] = "echo"
        description: ClassVar[str] = "Say it back"
        args_model: ClassVar[type[ToolArgs]] = EchoArgs
        mutates: ClassVar[bool] = False

        def run(self, args: EchoArgs) -> ToolResult:
            return ToolResult(text=args.text * (args.times or 1))

    (spec,) = Registry([Echo()]).schemas()
    assert spec == function_spec("echo", "Say it back", EchoArgs)
    assert spec["function"]["parameters"] == {
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "What to say"},
            "times": {"type": "integer", "description": "How often"},
        },
        "required": ["text"],
    }
