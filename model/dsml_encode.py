"""OpenAI-format chat messages -> DeepSeek-V3.2 prompt text, byte for byte as the official encoder writes it.

Rules (pinned by `fixtures/dsml/official_output.txt` unless a comment names another source):
- The prompt starts with BOS unless `context` is given (then only `messages` are rendered, with the
  context deciding where the last user message is).
- A user message renders as `<｜User｜>{content}<｜Assistant｜>` followed by `<think>` when it is the
  last user message of a thinking-mode conversation, `</think>` otherwise.
- An assistant message renders as `{reasoning}</think>{content}\\n\\n{tool calls}<｜end▁of▁sentence｜>`; the
  `reasoning</think>` part appears only in thinking mode and only after the last user message, so
  reasoning is kept across all tool calls of the current turn and dropped from earlier turns.
- Tool results that answer one assistant message form one `<function_results>` block; after the last
  one comes `\\n\\n<think>` (thinking mode, current turn) or `\\n\\n</think>`.
"""

from __future__ import annotations

import json
from typing import Any

from .dsml_format import (
    ASSISTANT_TOKEN,
    BOS_TOKEN,
    CALLS_TEMPLATE,
    DEVELOPER_USER_PREFIX,
    DSML_TOKEN,
    EOS_TOKEN,
    INVOKE_TEMPLATE,
    PARAM_TEMPLATE,
    RESPONSE_FORMAT_TEMPLATE,
    RESULT_TEMPLATE,
    RESULTS_CLOSE,
    RESULTS_OPEN,
    THINK_END,
    THINK_START,
    TOOLS_TEMPLATE,
    USER_TOKEN,
)

USER_ROLES = ("user", "developer")


def to_json(value: Any) -> str:
    """JSON as the official encoder writes it: default separators, non-ASCII kept as is."""
    return json.dumps(value, ensure_ascii=False)


def tool_schemas_block(tools: list[dict]) -> str:
    """The `## Tools` block listing OpenAI function specs, one JSON object per line."""
    functions = [tool.get("function", tool) for tool in tools]
    return TOOLS_TEMPLATE.format(
        dsml=DSML_TOKEN,
        think_start=THINK_START,
        think_end=THINK_END,
        tool_schemas="\n".join(to_json(f) for f in functions),
    )


def encode_arguments(arguments: str | dict) -> str:
    """One `<｜DSML｜parameter>` line per argument: strings as is, everything else as JSON."""
    args = json.loads(arguments) if isinstance(arguments, str) else arguments
    if not isinstance(args, dict):
        raise ValueError(f"tool-call arguments must be a JSON object, got {to_json(args)[:80]}")
    return "\n".join(
        PARAM_TEMPLATE.format(
            dsml=DSML_TOKEN,
            name=key,
            is_str="true" if isinstance(value, str) else "false",
            value=value if isinstance(value, str) else to_json(value),
        )
        for key, value in args.items()
    )


def encode_tool_calls(tool_calls: list[dict]) -> str:
    """The `<｜DSML｜function_calls>` block for OpenAI-format tool calls (without the leading blank line)."""
    invokes = [
        INVOKE_TEMPLATE.format(
            dsml=DSML_TOKEN,
            name=call["function"]["name"],
            arguments=encode_arguments(call["function"]["arguments"]),
        )
        for call in tool_calls
    ]
    return CALLS_TEMPLATE.format(dsml=DSML_TOKEN, calls="\n".join(invokes))


def _text(content: Any) -> str:
    # None renders as nothing (the official encoder writes "None" for a user message without content,
    # which no valid OpenAI request has); a list of content parts renders its text parts.
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _last_user_index(messages: list[dict]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") in USER_ROLES:
            return index
    return -1


def _instructions(msg: dict) -> str:
    """Tools block and response format attached to a system or developer message."""
    out = ""
    if msg.get("tools"):
        out += "\n\n" + tool_schemas_block(msg["tools"])
    if msg.get("response_format"):
        out += "\n\n" + RESPONSE_FORMAT_TEMPLATE.format(schema=to_json(msg["response_format"]))
    return out


def _think_marker(open_thinking: bool) -> str:
    return THINK_START if open_thinking else THINK_END


def _answered_call(index: int, messages: list[dict]) -> tuple[int, int]:
    """For a tool message: (1-based position among the results, number of calls it answers)."""
    start = index - 1
    while start >= 0 and messages[start].get("role") == "tool":
        start -= 1
    calls = messages[start].get("tool_calls") if start >= 0 and messages[start].get("role") == "assistant" else None
    order = index - start
    if not calls or len(calls) < order:
        raise ValueError(f"message {index} is a tool result but no assistant tool call is left for it to answer")
    return order, len(calls)


def _render(index: int, messages: list[dict], last_user: int, thinking: bool) -> str:
    msg = messages[index]
    role = msg.get("role")
    content = _text(msg.get("content"))
    if role == "system":
        # Several system messages are concatenated with no separator, as the official encoder does.
        return content + _instructions(msg)
    if role == "user":
        return USER_TOKEN + content + ASSISTANT_TOKEN + _think_marker(thinking and index == last_user)
    if role == "developer":
        # Official rule (not in the fixture): a developer message is a user turn carrying the tools and
        # response format first, then the request after a fixed heading; it must have content.
        if not content:
            raise ValueError(f"developer message {index} has no content")
        body = _instructions(msg) + DEVELOPER_USER_PREFIX + content
        return USER_TOKEN + body + ASSISTANT_TOKEN + _think_marker(thinking and index == last_user)
    if role == "tool":
        order, total = _answered_call(index, messages)
        out = (RESULTS_OPEN if order == 1 else "") + RESULT_TEMPLATE.format(content=content)
        if order == total:
            out += RESULTS_CLOSE + "\n\n" + _think_marker(thinking and index >= last_user)
        return out
    if role == "assistant":
        calls = "\n\n" + encode_tool_calls(msg["tool_calls"]) if msg.get("tool_calls") else ""
        reasoning = ""
        if thinking and index > last_user:
            reasoning = _text(msg.get("reasoning_content")) + THINK_END
        return reasoning + content + calls + EOS_TOKEN
    raise ValueError(f"message {index} has unknown role {role!r}")


def encode_messages(
    messages: list[dict],
    thinking: bool = True,
    drop_thinking: bool = True,
    context: list[dict] | None = None,
    add_bos: bool = True,
) -> str:
    """Render `messages` (after `context`, which is not rendered) as DeepSeek-V3.2 prompt text.

    `thinking=False` is the official "chat" mode: no reasoning anywhere, `</think>` after every user
    turn and tool-result block. `drop_thinking` mirrors the official signature; in the official V3.2
    encoder the rendering rule above already omits reasoning before the last user message, so the flag
    changes nothing (the official encoder also drops developer messages that precede the last user
    message when it is set, which misaligns its indices and fails; they are kept here).
    Raises ValueError for conversations the format cannot express (a tool result with no call to answer).
    """
    del drop_thinking  # see the docstring: the rendering rule already decides which reasoning is shown
    context = list(context or [])
    full = context + list(messages)
    last_user = _last_user_index(full)
    prompt = BOS_TOKEN if add_bos and not context else ""
    return prompt + "".join(_render(i, full, last_user, thinking) for i in range(len(context), len(full)))


def assistant_prefix(messages: list[dict], thinking: bool = True) -> str:
    """Text to append after `encode_messages(messages, thinking)` so the model writes the next assistant turn.

    After a user message or a complete block of tool results the encoding already ends with the opener
    (`<think>` in thinking mode, `</think>` in chat mode), so nothing is added. After anything else (a
    system prompt alone, a finished assistant message) the official format has no opener, so the
    assistant marker and the think marker are added. Raises ValueError when tool results are missing.
    """
    if messages:
        last = messages[-1]
        if last.get("role") in USER_ROLES:
            return ""
        if last.get("role") == "tool":
            order, total = _answered_call(len(messages) - 1, messages)
            if order < total:
                raise ValueError(f"only {order} of {total} tool calls have results; add the missing tool messages")
            return ""
    return ASSISTANT_TOKEN + _think_marker(thinking)


def generation_prompt(
    messages: list[dict], thinking: bool = True, context: list[dict] | None = None, add_bos: bool = True
) -> str:
    """The whole prompt for the next assistant turn: the encoded conversation plus `assistant_prefix`."""
    text = encode_messages(messages, thinking=thinking, context=context, add_bos=add_bos)
    return text + assistant_prefix(list(context or []) + list(messages), thinking=thinking)
