"""The context budget: keep every prompt under `model.max_context` without ever failing for length.

In order, each only when the previous was not enough:
1. elide the oldest tool outputs (never the last step's), down to a low-water mark so the KV cache
   is cut back rarely and in one go; each becomes a one-line pointer that `read_output` follows;
2. replace the older turns with a "done / next" note the model writes;
3. replace the earlier steps of the current turn with such a note (their reasoning goes here, last);
4. shorten the last step's own outputs to head + tail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dsagent.agent.conversation import PROGRESS_MARK, Conversation
from dsagent.agent.events import ContextCompacted, Event
from dsagent.tools.base import truncate_middle

LOW_WATER = 0.6  # compact down to this share of the prompt budget
MIN_OUTPUT_CHARS = 400  # outputs shorter than this are not worth a pointer

Count = Callable[[list[dict[str, Any]]], int]
Summarise = Callable[[list[dict[str, Any]], int], str]  # (messages to replace, max chars of transcript) -> note


class ContextTooSmall(Exception):
    """Even the system prompt and the task alone do not fit `model.max_context`."""


@dataclass
class Budget:
    max_context: int
    reserve: int  # tokens kept free for the completion

    @property
    def limit(self) -> int:
        return self.max_context - self.reserve

    @property
    def low(self) -> int:
        return int(self.limit * LOW_WATER)


def fit(conv: Conversation, budget: Budget, count: Count, summarise: Summarise, emit: Callable[[Event], None]) -> int:
    """Compact `conv` (through `emit`, so the session records it) until its prompt fits; returns its tokens."""
    tokens = count(conv.prompt_messages())
    if tokens <= budget.limit:
        return tokens
    chars_per_token = max(1.0, _chars(conv.prompt_messages()) / max(tokens, 1))
    tail = _tail_start(conv)

    chosen = _oldest_outputs(conv, tail, (tokens - budget.low) * chars_per_token)
    if chosen:
        after = count(conv.preview(elided=chosen))
        emit(ContextCompacted(elided=chosen, prompt_tokens_before=tokens, prompt_tokens_after=after))
        tokens = after
    user = conv.last_user_index()
    if tokens > budget.limit and user > 0:
        tokens = _summarise(conv, 0, user, budget, count, summarise, emit, tokens)
        user, tail = conv.last_user_index(), _tail_start(conv)
    if tokens > budget.limit and tail > user + 1:
        tokens = _summarise(conv, user + 1, tail, budget, count, summarise, emit, tokens)
    if tokens > budget.limit:
        tokens = _shorten_tail(conv, budget, count, emit, tokens, chars_per_token)
    if tokens > budget.limit:
        raise ContextTooSmall(
            f"the system prompt and the task take {tokens} tokens, more than model.max_context "
            f"({budget.max_context}) leaves for a prompt; raise model.max_context"
        )
    return tokens


def _chars(messages: list[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        total += len(message.get("content") or "") + len(message.get("reasoning_content") or "")
        for call in message.get("tool_calls") or []:
            total += len(call["function"].get("arguments") or "")
    return total


def _tail_start(conv: Conversation) -> int:
    """Index of the last assistant message of the current turn (the step whose results the model has
    not answered yet), or len(items) when the turn has none."""
    user = conv.last_user_index()
    for index in range(len(conv.items) - 1, user, -1):
        if conv.items[index]["role"] == "assistant":
            return index
    return len(conv.items)


def _oldest_outputs(conv: Conversation, tail: int, chars_to_free: float) -> list[str]:
    chosen: list[str] = []
    for item in conv.items[:tail]:
        if chars_to_free <= 0:
            break
        call_id = item.get("tool_call_id")
        if item["role"] != "tool" or call_id in conv.elided or len(item["content"]) < MIN_OUTPUT_CHARS:
            continue
        chosen.append(call_id)
        chars_to_free -= len(item["content"]) - 120
    return chosen


def _summarise(
    conv: Conversation,
    start: int,
    end: int,
    budget: Budget,
    count: Count,
    summarise: Summarise,
    emit: Callable[[Event], None],
    tokens: int,
) -> int:
    # Steps of the current turn are summarised with their user message, so the note covers its task and
    # any earlier progress note. The request itself must fit: its transcript gets about the prompt budget.
    user = conv.last_user_index()
    shown = conv.items[user:end] if start == user + 1 else conv.items[start:end]
    note = summarise(shown, max(2000, budget.limit * 2))
    if not note.strip():
        note = mechanical_summary(shown)
    preview = conv.preview(summary=(start, end, note))
    after = count(preview)
    emit(
        ContextCompacted(
            summary=note, summary_start=start, summary_end=end, prompt_tokens_before=tokens, prompt_tokens_after=after
        )
    )
    return after


def _shorten_tail(
    conv: Conversation, budget: Budget, count: Count, emit: Callable[[Event], None], tokens: int, chars_per_token: float
) -> int:
    tail = [item for item in conv.items[_tail_start(conv) :] if item["role"] == "tool"]
    tail.sort(key=lambda item: len(item["content"]), reverse=True)
    shortened: dict[str, int] = {}
    excess = (tokens - budget.low) * chars_per_token
    for item in tail:
        if excess <= 0:
            break
        keep = max(200, int(len(item["content"]) - excess))
        shortened[item["tool_call_id"]] = keep
        excess -= len(item["content"]) - keep
    if not shortened:
        return tokens
    after = count(conv.preview(shortened=shortened))
    emit(ContextCompacted(shortened=shortened, prompt_tokens_before=tokens, prompt_tokens_after=after))
    return after


def transcript(items: list[dict[str, Any]], max_chars: int) -> str:
    """The messages as a plain log for the summary request, cut to `max_chars`."""
    names: dict[str, str] = {}
    parts = []
    per_output = max(300, max_chars // max(1, 2 * len(items)))
    for item in items:
        role = item["role"]
        if role == "user":
            parts.append(f"USER:\n{item['content']}")
        elif role == "assistant":
            if item.get("reasoning_content"):
                parts.append(f"AGENT (thinking):\n{item['reasoning_content']}")
            if item.get("content"):
                parts.append(f"AGENT:\n{item['content']}")
            for call in item.get("tool_calls") or []:
                names[call["id"]] = call["function"]["name"]
                parts.append(f"CALL {call['function']['name']} {call['function'].get('arguments', '')}")
        elif role == "tool":
            output = truncate_middle(item["content"], max_lines=60, max_chars=per_output)
            parts.append(f"RESULT of {names.get(item['tool_call_id'], 'tool')}:\n{output}")
    return truncate_middle("\n\n".join(parts), max_lines=100_000, max_chars=max_chars)


def mechanical_summary(items: list[dict[str, Any]]) -> str:
    """A note without the model: the calls made and the first line of each result, after the "done" lines
    of an earlier progress note."""
    results = {item["tool_call_id"]: item["content"] for item in items if item["role"] == "tool"}
    done = []
    for item in items:
        if item["role"] == "user" and PROGRESS_MARK in item["content"]:
            earlier = item["content"].split(PROGRESS_MARK, 1)[1].split("\nNext:")[0]
            done += [line for line in earlier.splitlines() if line.startswith("- ")]
    for item in items:
        for call in item.get("tool_calls") or []:
            output = results.get(call["id"], "").strip()
            first = output.splitlines()[0][:100] if output else "no result"
            done.append(f"- {call['function']['name']} {call['function'].get('arguments', '')[:100]} -> {first}")
    return "Done:\n" + ("\n".join(done[-30:]) or "- nothing recorded") + "\nNext:\n- continue the task"
