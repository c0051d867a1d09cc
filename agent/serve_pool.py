"""Engine sessions of `dsagent serve`, one per conversation prefix.

A request whose prompt extends everything a session holds continues that session (only the new
tokens are prefilled). Otherwise the session sharing the longest prefix is forked, so the other
conversation keeps its cache; the least recently used session goes when the pool is full.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dsagent.agent.local import LocalModel, TokenCache


class SessionPool:
    def __init__(self, model: LocalModel, max_sessions: int = 4) -> None:
        self.model = model
        self.max_sessions = max(1, max_sessions)
        self.caches: list[TokenCache] = []

    def take(self, prompt: str) -> TokenCache:
        from dsagent.agent.local import TokenCache

        scored = [(cache.matched_chars(prompt), cache) for cache in self.caches]
        extending = [(chars, cache) for chars, cache in scored if chars and chars == cache.text_length()]
        if extending:
            chosen = max(extending, key=lambda pair: pair[0])[1]
        else:
            if len(self.caches) >= self.max_sessions:
                oldest = min(self.caches, key=lambda cache: cache.used)
                self.caches.remove(oldest)
                scored = [pair for pair in scored if pair[1] is not oldest]
            chars, best = max(scored, key=lambda pair: pair[0], default=(0, None))
            if best is not None and chars:
                chosen = TokenCache(best.session.fork(), list(best.segments))
            else:
                chosen = self.model.new_cache()
            self.caches.append(chosen)
        chosen.used = time.monotonic()
        return chosen
