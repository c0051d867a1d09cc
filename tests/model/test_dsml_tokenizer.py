"""DSML with the real DeepSeek tokenizer: format markers are single tokens and prompts round-trip."""

from __future__ import annotations

import json

import pytest
from dsagent.model.dsml import (
    BOS_ID,
    BOS_TOKEN,
    EOS_ID,
    EOS_TOKEN,
    StreamParser,
    coalesce,
    encode_messages,
    parse_completion,
)
from dsagent.model.tokenizer import Tokenizer, package_tokenizer_file
from tokenizers import Tokenizer as HFTokenizer


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer(HFTokenizer.from_file(str(package_tokenizer_file())))


@pytest.fixture
def fixture_messages(shared_dir) -> list[dict]:
    case = json.loads((shared_dir / "fixtures/dsml/official_input.json").read_text(encoding="utf-8"))
    return [dict(case["messages"][0], tools=case["tools"]), *case["messages"][1:]]


@pytest.mark.parametrize(
    "token", ["<think>", "</think>", "｜DSML｜", EOS_TOKEN, BOS_TOKEN, "<｜User｜>", "<｜Assistant｜>"]
)
def test_format_markers_are_single_tokens(tokenizer, token):
    ids = tokenizer.encode(token)
    assert len(ids) == 1 and tokenizer.decode(ids) == token


def test_special_ids(tokenizer):
    assert tokenizer.encode(EOS_TOKEN) == [EOS_ID] and tokenizer.encode(BOS_TOKEN) == [BOS_ID]


def test_fixture_prompt_round_trips(tokenizer, shared_dir, fixture_messages):
    prompt = encode_messages(fixture_messages)
    assert prompt == (shared_dir / "fixtures/dsml/official_output.txt").read_text(encoding="utf-8")[:-1]
    ids = tokenizer.encode(prompt)
    assert ids[0] == BOS_ID and ids.count(EOS_ID) == prompt.count(EOS_TOKEN)
    assert ids.count(tokenizer.token_id("｜DSML｜")) == prompt.count("｜DSML｜")
    assert tokenizer.decode(ids) == prompt


def test_completion_streamed_token_by_token(tokenizer, fixture_messages):
    """What the local backend does: ids -> stream decoder -> parser, stopping at EOS."""
    for k, message in enumerate(fixture_messages):
        if message["role"] != "assistant":
            continue
        completion = encode_messages([message], context=fixture_messages[:k])
        tools = fixture_messages[0]["tools"]
        parser, decoder, events = StreamParser(tools), tokenizer.stream(), []
        for token in tokenizer.encode(completion):
            if token == EOS_ID:
                break
            events += parser.feed(decoder.feed(token))
        events += parser.feed(decoder.flush()) + parser.finish()
        whole_events, whole = parse_completion(completion, tools)
        assert coalesce(events) == whole_events
        got = parser.message()
        assert [c["function"] for c in got["tool_calls"]] == [c["function"] for c in whole["tool_calls"]]
        assert (got["content"], got["reasoning_content"]) == (whole["content"], whole["reasoning_content"])
