"""DeepSeek-V3.2's chat format (DSML): encoding conversations, parsing streamed completions, tool schemas.

- `encode_messages` renders OpenAI-format messages byte for byte as the official encoder does.
- `assistant_prefix` / `generation_prompt` give the text that starts the next assistant turn.
- `StreamParser` turns completion deltas into events and a final OpenAI-format message; it never raises.
- `tool_schemas_block` / `function_spec` / `schema_from_model` build the tools block of the system prompt.
- Generation stops at the end-of-sentence token (`STOP_TOKEN_IDS`).
"""

from __future__ import annotations

from .dsml_encode import (
    assistant_prefix,
    encode_arguments,
    encode_messages,
    encode_tool_calls,
    generation_prompt,
    to_json,
    tool_schemas_block,
)
from .dsml_events import (
    ContentDelta,
    Event,
    FormatError,
    MessageEnd,
    ReasoningDelta,
    ToolCallError,
    ToolCallFinished,
    ToolCallStarted,
    coalesce,
)
from .dsml_format import (
    ASSISTANT_TOKEN,
    BOS_ID,
    BOS_TOKEN,
    DSML_TOKEN,
    EOS_ID,
    EOS_TOKEN,
    SPECIAL_TOKENS,
    THINK_END,
    THINK_START,
    USER_TOKEN,
)
from .dsml_parse import StreamParser, parse_completion
from .dsml_schema import function_spec, schema_from_model

# Token ids that end an assistant turn: the model closes every message, tool calls included, with EOS.
STOP_TOKEN_IDS: tuple[int, ...] = (EOS_ID,)

__all__ = [
    "ASSISTANT_TOKEN",
    "BOS_ID",
    "BOS_TOKEN",
    "DSML_TOKEN",
    "EOS_ID",
    "EOS_TOKEN",
    "SPECIAL_TOKENS",
    "STOP_TOKEN_IDS",
    "THINK_END",
    "THINK_START",
    "USER_TOKEN",
    "ContentDelta",
    "Event",
    "FormatError",
    "MessageEnd",
    "ReasoningDelta",
    "StreamParser",
    "ToolCallError",
    "ToolCallFinished",
    "ToolCallStarted",
    "assistant_prefix",
    "coalesce",
    "encode_arguments",
    "encode_messages",
    "encode_tool_calls",
    "function_spec",
    "generation_prompt",
    "parse_completion",
    "schema_from_model",
    "to_json",
    "tool_schemas_block",
]
