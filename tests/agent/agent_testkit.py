"""Helpers for the agent tests: scripted messages, and a tokenizer for the tiny parity checkpoint.

The parity checkpoints ship no tokenizer and the DeepSeek one has 129k ids, so the agent tests train a
small byte-level BPE that fits the checkpoint's 1024-token vocabulary (special tokens at the ids its
config names: BOS 0, EOS 1) on the text an agent prompt is made of. Training is deterministic and
takes well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL = [
    "<｜begin▁of▁sentence｜>",
    "<｜end▁of▁sentence｜>",
    "<｜▁pad▁｜>",
    "<｜User｜>",
    "<｜Assistant｜>",
    "<think>",
    "</think>",
]


def corpus() -> list[str]:
    from dsagent.agent.prompt import load_prompt
    from dsagent.model.dsml import encode_tool_calls
    from dsagent.model.dsml_format import TOOLS_TEMPLATE

    texts = [load_prompt("system.md"), load_prompt("summary.md"), TOOLS_TEMPLATE]
    # Tool-call blocks, so the markup of a call is a handful of tokens as with the real vocabulary.
    for name, args in (
        ("read_file", '{"path": "a.py"}'),
        ("finish", '{"summary": "done"}'),
        ("edit_file", '{"path": "a.py", "old_string": "x = 1", "new_string": "x = 2"}'),
    ):
        call = {"type": "function", "function": {"name": name, "arguments": args}}
        texts += ["</think>\n\n" + encode_tool_calls([call]) + "<｜end▁of▁sentence｜>"] * 20
    texts.append(Path(__file__).read_text(encoding="utf-8"))
    texts.append(
        '<function_results>\n<result>ok</result>\n</function_results>\n{"name": "read_file", "type": "object"}'
    )
    return texts


def build(vocab_size: int = 1024) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    return tokenizer


def tiny_checkpoint(parity: Path, out: Path) -> Path:
    """`out` holds the parity checkpoint (linked, not copied) plus the small tokenizer."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        (out / name).symlink_to(parity / name)
    build().save(str(out / "tokenizer.json"))
    ids = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    assert max(ids.values()) < 1024
    return out


def call(name: str, call_id: str | None = None, /, **arguments: Any) -> dict[str, Any]:
    """One OpenAI-format tool call."""
    return {
        "id": call_id or f"call_{name}_{abs(hash(json.dumps(arguments, sort_keys=True))) % 10**8}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def step(reasoning: str, *calls: dict[str, Any], content: str = "", **extra: Any) -> dict[str, Any]:
    """One scripted assistant message."""
    message: dict[str, Any] = {"role": "assistant", "reasoning_content": reasoning, "content": content}
    if calls:
        message["tool_calls"] = list(calls)
    return {**message, **extra}


def write_script(path: Path, messages: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in messages), encoding="utf-8")
    return path


def commit_project(repo: Path, files: dict[str, str]) -> Path:
    """Write `files` into the git repository and commit them."""
    import subprocess

    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text, encoding="utf-8")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-qm", "project"], cwd=repo, check=True, capture_output=True)
    return repo
