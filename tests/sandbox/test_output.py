"""The bounded output buffer: head and tail kept, the middle counted, memory capped."""

from __future__ import annotations

from dsagent.sandbox.output import OutputBuffer


def test_short_output_is_kept_whole():
    buffer = OutputBuffer(head=100, tail=100)
    buffer.write(b"hello\n")
    buffer.write(b"world\n")
    assert buffer.text() == "hello\nworld\n" and not buffer.truncated and buffer.total == 12


def test_long_output_keeps_head_and_tail_from_line_starts():
    buffer = OutputBuffer(head=64, tail=64)
    lines = [f"line {i}\n".encode() for i in range(10_000)]
    for start in range(0, len(lines), 7):  # chunks that cut lines anywhere
        buffer.write(b"".join(lines[start : start + 7]))
    text = buffer.text()
    assert buffer.truncated and buffer.total == sum(map(len, lines))
    assert text.startswith("line 0\nline 1\n")
    assert text.endswith("line 9998\nline 9999\n")
    tail = text.split("omitted …\n")[1]
    assert tail.startswith("line ")  # the tail starts on a whole line
    assert len(text) < 64 + 64 + 100


def test_memory_stays_bounded_for_huge_chunks():
    buffer = OutputBuffer(head=10, tail=20)
    for _ in range(1000):
        buffer.write(b"x" * 100_000)
    assert buffer.total == 100_000_000
    assert len(buffer._head) == 10 and buffer._tail_len <= 20 + 100_000


def test_head_only_buffer():
    buffer = OutputBuffer(head=5, tail=0)
    buffer.write(b"abcdefgh")
    assert buffer.truncated and buffer.text().startswith("abcde")


def test_recent_is_the_latest_output_from_a_line_start():
    buffer = OutputBuffer(head=64, tail=64)
    assert buffer.recent() == ""
    buffer.write(b"first\nsecond\n")
    assert buffer.recent() == "first\nsecond\n"  # still in the head
    for i in range(50):
        buffer.write(f"line {i}\n".encode())
    assert buffer.recent(32) == "line 47\nline 48\nline 49\n"  # whole lines only
