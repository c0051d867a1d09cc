"""Bounded capture of a command's output: the first and last bytes, however much it prints."""

from __future__ import annotations

import threading
from collections import deque


class OutputBuffer:
    """Keeps the first `head` bytes and the last `tail` bytes; memory stays O(head + tail).

    Generous on purpose (a JUnit report is read back through it); what the model sees is cut
    further by the tools."""

    def __init__(self, head: int = 1 << 20, tail: int = 1 << 20) -> None:
        self.head_limit = head
        self.tail_limit = tail
        self._head = bytearray()
        self._tail: deque[bytes] = deque()
        self._tail_len = 0
        self.total = 0
        self._lock = threading.Lock()  # a front end reads recent() while the command writes

    def write(self, chunk: bytes) -> None:
        with self._lock:
            self._write(chunk)

    def recent(self, max_bytes: int = 4096) -> str:
        """The last bytes written so far (a live view of a running command), from a line start when it can."""
        with self._lock:
            # when the middle was dropped the tail alone is far longer than max_bytes
            written = bytes(self._head[-max_bytes:]) + b"".join(self._tail)
        data = written[-max_bytes:]
        newline = data.find(b"\n")
        if len(written) > max_bytes and 0 <= newline < len(data) - 1:
            data = data[newline + 1 :]
        return data.decode("utf-8", errors="replace")

    def _write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if not chunk or self.tail_limit == 0:
            return
        if len(chunk) >= self.tail_limit:
            self._tail.clear()
            chunk = chunk[-self.tail_limit :]
            self._tail_len = 0
        self._tail.append(chunk)
        self._tail_len += len(chunk)
        while self._tail_len - len(self._tail[0]) >= self.tail_limit:
            self._tail_len -= len(self._tail.popleft())

    @property
    def truncated(self) -> bool:
        return self.total > len(self._head) + self._tail_len

    def text(self) -> str:
        """Decoded output with a marker where the middle was dropped."""
        head = self._head.decode("utf-8", errors="replace")
        tail_bytes = b"".join(self._tail)
        kept = len(self._head) + len(tail_bytes)
        if self.total > kept:
            # Drop at most the partial excess at the start of the tail so it begins on a fresh line.
            excess = self._tail_len - self.tail_limit
            tail_bytes = tail_bytes[max(excess, 0) :]
            newline = tail_bytes.find(b"\n", 0, 4096)
            if newline >= 0:
                tail_bytes = tail_bytes[newline + 1 :]
            omitted = self.total - len(self._head) - len(tail_bytes)
            marker = f"\n… {omitted} bytes of output omitted …\n"
            return head + marker + tail_bytes.decode("utf-8", errors="replace")
        return head + tail_bytes.decode("utf-8", errors="replace")
