"""The `openai` backend: any OpenAI-compatible chat-completions endpoint (DeepSeek's API, vLLM, SGLang,
`dsagent serve`). Streaming with native tool calls; `reasoning_content` goes back for the assistant
messages of the current turn only; 429/5xx and dropped connections are retried with backoff before the
answer starts; an auth failure is one clear line. The API key is sent in a header and nowhere else."""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from dsagent.agent.backend import (
    BackendError,
    Completion,
    CompletionRequest,
    OnDelta,
    StepUsage,
    assistant_message,
    check_arguments,
    encoded_prompt,
    estimate_tokens,
)
from dsagent.agent.sse import StreamState, sse_lines

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


def endpoint(url: str) -> str:
    """`http://host:port` -> `.../v1/chat/completions`; `.../v1` -> `.../v1/chat/completions`."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url + "/chat/completions"


def api_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as the API takes them: tools go in the request, and reasoning only after the last user message."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    out = []
    for index, message in enumerate(messages):
        message = {k: v for k, v in message.items() if k != "tools"}
        if message.get("role") == "assistant" and (index < last_user or not message.get("reasoning_content")):
            message.pop("reasoning_content", None)
        out.append(message)
    return out


class OpenAIBackend:
    scripted = False

    def __init__(
        self,
        url: str,
        name: str | None = None,
        api_key: str | None = None,
        timeout: float = 600.0,
        retries: int = 4,
        backoff: float = 1.0,
    ) -> None:
        self.url = endpoint(url)
        self.name = name
        self.retries = retries
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), headers=headers)
        self.identity = {"backend": "openai", "url": url, "name": name, "scripted": False}

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend({self.url!r}, name={self.name!r})"

    def complete(self, request: CompletionRequest, on_delta: OnDelta, stop: threading.Event) -> Completion:
        body: dict[str, Any] = {
            "model": self._model_name(),
            "messages": api_messages(request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": request.max_new_tokens,
            "temperature": request.sampling.temperature,
            "top_p": request.sampling.top_p,
        }
        if request.sampling.seed is not None:
            body["seed"] = request.sampling.seed
        if request.tools:
            body["tools"] = request.tools
        for attempt in range(self.retries + 1):
            state = StreamState()
            try:
                return self._stream(body, request, state, on_delta, stop)
            except _Retry as retry:
                if state.started or attempt == self.retries or stop.is_set():
                    raise BackendError(f"{self.url}: {retry.reason} (after {attempt + 1} tries)", "network") from None
                if stop.wait(retry.after or self.backoff * 2**attempt):
                    break
        partial = assistant_message("", "", [])
        return Completion(partial, StepUsage(estimated=True), stopped="cancelled")

    def _stream(
        self,
        body: dict[str, Any],
        request: CompletionRequest,
        state: StreamState,
        on_delta: OnDelta,
        stop: threading.Event,
    ) -> Completion:
        started = time.perf_counter()
        try:
            with self._client.stream("POST", self.url, json=body) as response:
                self._check_status(response)
                watcher = _close_on_stop(response, stop)
                try:
                    for data in sse_lines(response.iter_lines()):
                        state.feed(json.loads(data), on_delta, started)
                        if stop.is_set():
                            break
                finally:
                    watcher.set()
        except (httpx.TransportError, httpx.StreamError) as exc:
            if stop.is_set():
                return self._result(state, request, started, "cancelled")
            raise _Retry(f"connection failed: {type(exc).__name__}: {exc}") from None
        except json.JSONDecodeError:
            raise BackendError(f"{self.url} sent a stream chunk that is not JSON; is it OpenAI-compatible?") from None
        return self._result(state, request, started, "cancelled" if stop.is_set() else None)

    def _check_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        response.read()
        detail = _error_text(response)
        if response.status_code in (401, 403):
            raise BackendError(
                f"{self.url} refused the API key (HTTP {response.status_code}{detail}); set "
                "model.api_key in your config or DSAGENT_MODEL__API_KEY",
                "auth",
            )
        if response.status_code in RETRY_STATUS:
            after = response.headers.get("retry-after")
            raise _Retry(f"HTTP {response.status_code}{detail}", float(after) if after and after.isdigit() else None)
        raise BackendError(f"{self.url} rejected the request (HTTP {response.status_code}{detail})", "model")

    def _result(
        self, state: StreamState, request: CompletionRequest, started: float, stopped: str | None
    ) -> Completion:
        calls = [] if stopped == "cancelled" else state.tool_calls()
        message = assistant_message("".join(state.content), "".join(state.reasoning), calls)
        usage = state.usage(started)
        if usage.prompt_tokens == 0 and usage.generated == 0:
            usage = StepUsage(
                prompt_tokens=self.count_tokens(request.messages, request.thinking),
                generated=estimate_tokens(json.dumps(message, ensure_ascii=False)),
                estimated=True,
            )
            usage.prefilled = usage.prompt_tokens
        final = stopped or ("length" if state.finish_reason == "length" else "end")
        return Completion(message, usage, stopped=final, malformed=check_arguments(calls, request.tools))

    def _model_name(self) -> str:
        if self.name:
            return self.name
        models_url = self.url.removesuffix("/chat/completions") + "/models"
        try:
            listed = self._client.get(models_url).json().get("data") or []
        except (httpx.HTTPError, ValueError):
            listed = []
        if not listed:
            raise BackendError(
                f"no model name given and {models_url} lists none; use --model openai:URL#model-name", "config"
            )
        self.name = listed[0]["id"]
        return self.name

    def count_tokens(self, messages: list[dict[str, Any]], thinking: bool = True) -> int:
        return estimate_tokens(encoded_prompt(messages, thinking))

    def close(self) -> None:
        self._client.close()


class _Retry(Exception):
    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.after = reason, after


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        text = error.get("message") if isinstance(error, dict) else str(error or "")
    except ValueError:
        text = response.text[:200]
    return f": {text}" if text else ""


def _close_on_stop(response: httpx.Response, stop: threading.Event) -> threading.Event:
    """Close the response when `stop` is set, so a cancel does not wait for the next chunk."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            if stop.is_set():
                response.close()
                return

    threading.Thread(target=watch, daemon=True).start()
    return done
