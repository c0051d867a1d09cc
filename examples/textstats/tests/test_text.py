import pytest

from textstats.text import truncate, word_count


def test_word_count():
    assert word_count("one two  three\n") == 3


def test_truncate_ascii():
    assert truncate("hello world", 5) == "hell…"
    assert truncate("hi", 5) == "hi"


def test_truncate_unicode():
    assert truncate("naïve café", 10) == "naïve café"
    assert truncate("日本語のテキスト", 4) == "日本語…"


def test_truncate_limit():
    with pytest.raises(ValueError):
        truncate("x", 0)
