"""The conversation as a fold over events: the same code builds it live and from a session file.

`items` are the user / assistant / tool messages as the model sees them (OpenAI format), with
compactions applied; `outputs` keeps every tool output in full so an elided one can be read again.
"""

from __future__ import annotations

import json
from typing import Any

from dsagent.agent.events import Event
from dsagent.tools.base import truncate_middle

EARLIER_MARK = "[Summary of the earlier conversation]\n"
PROGRESS_MARK = "\n\n[Progress on this task so far, summarised]\n"
INTERRUPTED = (
    "interrupted: the run stopped before this call finished, so its effect is unknown; "
    "check the files or state it touches before repeating it"
)


def elision_pointer(call_id: str, name: str, output: str) -> str:
    lines = output.count("\n") + 1
    return (
        f"[output of {name} elided to save context ({lines} lines, {len(output)} chars); "
        f'read_output(call_id="{call_id}") shows it]'
    )


def shortened_output(call_id: str, output: str, chars: int) -> str:
    kept = truncate_middle(output, max_lines=max(4, chars // 40), max_chars=max(200, chars))
    return f'{kept}\n[output shortened to save context; read_output(call_id="{call_id}") shows all of it]'


class Conversation:
    def __init__(self, system: dict[str, Any]) -> None:
        self.system = system
        self.items: list[dict[str, Any]] = []
        self.outputs: dict[str, str] = {}
        self.names: dict[str, str] = {}  # call id -> tool name
        self.elided: set[str] = set()
        self.shortened: dict[str, int] = {}
        self.turn = 0
        self.step = 0
        self.finished = True  # no turn in progress

    def apply(self, event: Event) -> None:
        kind = event.type
        if kind == "turn_started":
            self.turn = event.turn
            self.finished = False
            self.items.append({"role": "user", "content": event.user_message})
        elif kind == "step_started":
            self.step = event.step
        elif kind == "assistant_message" and event.purpose == "step":
            self.items.append(event.message)
            for call in event.message.get("tool_calls") or []:
                self.names[call["id"]] = call["function"]["name"]
        elif kind == "tool_call_finished":
            self.outputs[event.call_id] = event.output
            self.items.append({"role": "tool", "tool_call_id": event.call_id, "content": event.output})
        elif kind == "context_compacted":
            self.elided.update(event.elided)
            self.shortened.update(event.shortened)
            if event.summary is not None:
                self._summarise(event.summary_start, event.summary_end, event.summary)
        elif kind == "turn_finished":
            self.finished = True

    # --- views -------------------------------------------------------------------------------------

    def prompt_messages(self) -> list[dict[str, Any]]:
        """System message + items, with elided and shortened outputs replaced."""
        view = [self.system]
        for item in self.items:
            call_id = item.get("tool_call_id")
            if item["role"] == "tool" and call_id in self.elided:
                item = {**item, "content": elision_pointer(call_id, self.names.get(call_id, "tool"), item["content"])}
            elif item["role"] == "tool" and call_id in self.shortened:
                item = {**item, "content": shortened_output(call_id, item["content"], self.shortened[call_id])}
            view.append(item)
        return view

    def preview(
        self,
        elided: list[str] = (),
        shortened: dict[str, int] | None = None,
        summary: tuple[int, int, str] | None = None,
    ) -> list[dict[str, Any]]:
        """The prompt messages as they would be after a compaction, without applying it."""
        clone = Conversation(self.system)
        clone.items = [dict(item) for item in self.items]
        clone.names = self.names
        clone.elided = self.elided | set(elided)
        clone.shortened = {**self.shortened, **(shortened or {})}
        if summary is not None:
            clone._summarise(*summary)
        return clone.prompt_messages()

    def last_user_index(self) -> int:
        for index in range(len(self.items) - 1, -1, -1):
            if self.items[index]["role"] == "user":
                return index
        return -1

    def pending_calls(self) -> list[dict[str, Any]]:
        """Tool calls of the last assistant message that have no result yet (a step cut short)."""
        answered = set()
        for item in reversed(self.items):
            if item["role"] == "tool":
                answered.add(item["tool_call_id"])
            elif item["role"] == "assistant":
                return [call for call in item.get("tool_calls") or [] if call["id"] not in answered]
            else:
                break
        return []

    def needs_model(self) -> bool:
        """True when the conversation ends where the model should write next (after a user or tool message)."""
        return bool(self.items) and self.items[-1]["role"] in ("user", "tool") and not self.pending_calls()

    # --- compaction --------------------------------------------------------------------------------

    def _summarise(self, start: int, end: int, summary: str) -> None:
        user = self.last_user_index()
        if end <= user:
            # Older turns: their note opens the current user message.
            del self.items[start:end]
            current = self.items[user - (end - start)]
            current["content"] = EARLIER_MARK + summary.strip() + "\n\n" + current["content"]
        else:
            # Earlier steps of the current turn: their note closes the current user message.
            del self.items[start:end]
            current = self.items[user]
            base = current["content"].split(PROGRESS_MARK)[0]
            current["content"] = base + PROGRESS_MARK + summary.strip()


def call_key(name: str, arguments: dict[str, Any]) -> str:
    return name + json.dumps(arguments, sort_keys=True, ensure_ascii=False)


def normalise_calls(
    message: dict[str, Any], malformed: dict[str, str], seen: set[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every call gets an id unique in the session (`seen`; recorded scripts may reuse theirs), and
    arguments that are not a JSON object become `{}` in the conversation (the chat format can only
    write an object; the error result quotes what the model wrote). Returns the message and the
    malformed-call explanations under the final ids."""
    from dsagent.agent.parsing import new_call_id

    calls = message.get("tool_calls")
    if not calls:
        return message, {}
    fixed, problems = [], {}
    for call in calls:
        call = {**call, "function": dict(call["function"])}
        old_id = call.get("id")
        if not old_id or old_id in seen:
            call["id"] = new_call_id()
        if old_id in malformed:
            problems[call["id"]] = malformed[old_id]
        seen.add(call["id"])
        if not _is_object(call["function"].get("arguments")):
            call["function"]["arguments"] = "{}"
        fixed.append(call)
    return {**message, "tool_calls": fixed}, problems


def _is_object(arguments: Any) -> bool:
    try:
        return isinstance(json.loads(arguments or "{}"), dict)
    except (TypeError, json.JSONDecodeError):
        return False
