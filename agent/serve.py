"""`dsagent serve`: an OpenAI-compatible chat-completions server over the local engine (stdlib only).

`POST /v1/chat/completions` (streaming or not, tools, `reasoning_content`, usage with cached tokens)
and `GET /v1/models`. One engine session is kept per conversation prefix: a request that extends a
cached conversation only prefills its new tokens. Requests are served one at a time (the engine is
not thread-safe); it listens on loopback unless told otherwise.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from dsagent.agent.backend import BackendError, Completion, CompletionRequest
from dsagent.agent.serve_pool import SessionPool

if TYPE_CHECKING:
    from dsagent.agent.local import LocalModel
    from dsagent.agent.scripted import ScriptedBackend
    from dsagent.config import SamplingSettings


class RequestError(Exception):
    """A bad request: answered with HTTP 400 and this message."""


class ChatService:
    """The model side of the server: turns a request body into a completion."""

    def __init__(
        self,
        model: LocalModel,
        name: str,
        sampling: SamplingSettings,
        max_context: int,
        script: ScriptedBackend | None = None,
        max_sessions: int = 4,
    ) -> None:
        self.model = model
        self.name = name
        self.sampling = sampling
        self.max_context = max_context
        self.script = script
        self.pool = SessionPool(model, max_sessions)
        self.lock = threading.Lock()

    def models(self) -> dict[str, Any]:
        entry = {
            "id": self.name,
            "object": "model",
            "created": 0,
            "owned_by": "dsagent",
            "scripted": self.script is not None,
        }
        return {"object": "list", "data": [entry]}

    def prepare(self, body: dict[str, Any]) -> tuple[str, CompletionRequest]:
        """The prompt and request a body asks for; RequestError when it is not a valid one."""
        from dsagent.model.dsml import generation_prompt

        messages, thinking = conversation(body)
        try:
            prompt = generation_prompt(messages, thinking=thinking)
            sampling = self.sampling.model_copy(
                update={k: body[k] for k in ("temperature", "top_p", "seed") if body.get(k) is not None}
            )
            limit = int(body.get("max_completion_tokens") or body.get("max_tokens") or sampling.max_new_tokens)
        except (ValueError, KeyError, TypeError) as exc:
            raise RequestError(f"the request is not a valid conversation: {exc}") from None
        return prompt, CompletionRequest(messages, limit, sampling, thinking=thinking)

    def complete(self, prompt: str, request: CompletionRequest, on_delta, stop: threading.Event) -> Completion:
        from dsagent.agent.local import forced_text

        with self.lock:
            forced = forced_text(self.script, request) if self.script is not None else None
            cache = self.pool.take(prompt)
            ids = cache.ids_for(prompt, self.model.tokenizer.encode, remember=False)
            request.max_new_tokens = max(1, min(request.max_new_tokens, self.max_context - len(ids)))
            return self.model.complete(cache, prompt, request, on_delta, stop, forced)


def conversation(body: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The request's messages with its tools attached to the system message, and the thinking flag."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise RequestError("`messages` must be a non-empty list of message objects")
    messages = [dict(m) for m in messages]
    tools = body.get("tools") or []
    if tools:
        if messages[0].get("role") != "system":
            messages.insert(0, {"role": "system", "content": ""})
        messages[0]["tools"] = tools
    thinking = body.get("thinking", True)
    if isinstance(thinking, dict):  # {"type": "enabled" | "disabled"}, as some APIs spell it
        thinking = thinking.get("type") != "disabled"
    return messages, bool(thinking)


def usage_json(completion: Completion) -> dict[str, Any]:
    usage = completion.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.generated,
        "total_tokens": usage.prompt_tokens + usage.generated,
        "prompt_tokens_details": {"cached_tokens": usage.reused},
    }


def finish_reason(completion: Completion) -> str:
    if completion.message.get("tool_calls"):
        return "tool_calls"
    return "length" if completion.stopped == "length" else "stop"


class Handler(BaseHTTPRequestHandler):
    service: ChatService
    api_key: str | None = None
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI prints its own line per request
        return None

    def do_GET(self) -> None:
        if not self._authorised():
            return
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._json(200, self.service.models())
        else:
            self._json(404, _error(f"no route {self.path}; try /v1/chat/completions or /v1/models"))

    def do_POST(self) -> None:
        if not self._authorised():
            return
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._json(404, _error(f"no route {self.path}; try /v1/chat/completions"))
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            if not isinstance(body, dict):
                raise RequestError("the request body must be a JSON object")
            prompt, request = self.service.prepare(body)
            if body.get("stream"):
                self._stream(body, prompt, request)
            else:
                completion = self.service.complete(prompt, request, lambda kind, text: None, threading.Event())
                self._json(200, self._response(body, completion))
        except (RequestError, json.JSONDecodeError) as exc:
            self._json(400, _error(str(exc)))
        except BackendError as exc:
            self._json(500, _error(str(exc), "server_error"))

    def _authorised(self) -> bool:
        if self.api_key and self.headers.get("authorization") != f"Bearer {self.api_key}":
            self._json(401, _error("missing or wrong API key", "authentication_error"))
            return False
        return True

    def _response(self, body: dict[str, Any], completion: Completion) -> dict[str, Any]:
        message = {k: v for k, v in completion.message.items() if v or k in ("role", "content")}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.service.name,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(completion)}],
            "usage": usage_json(completion),
        }

    def _stream(self, body: dict[str, Any], prompt: str, request: CompletionRequest) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        stop = threading.Event()
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model") or self.service.name,
        }

        def write(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
            try:
                self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()
            except OSError:
                stop.set()  # the client went away: stop generating

        def send(delta: dict[str, Any], reason: str | None = None) -> None:
            write({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]})

        send({"role": "assistant", "content": ""})
        calls = _CallStream(send)

        def on_delta(kind: str, text: str) -> None:
            if kind == "tool_call":
                part = json.loads(text)
                calls.send(part["index"], part["id"], part["name"], part.get("arguments"))
            else:
                send({"reasoning_content" if kind == "reasoning" else "content": text})

        try:
            completion = self.service.complete(prompt, request, on_delta, stop)
        except BackendError as exc:  # the headers are out: say it in the stream
            write(_error(str(exc), "server_error"))
            write("[DONE]")
            return
        for index, call in enumerate(completion.message.get("tool_calls") or []):  # what did not stream: malformed
            calls.send(index, call["id"], call["function"]["name"], call["function"]["arguments"])
        send({}, finish_reason(completion))
        if (body.get("stream_options") or {}).get("include_usage"):
            write({**base, "choices": [], "usage": usage_json(completion)})
        write("[DONE]")

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _CallStream:
    """Tool calls as streaming APIs send them: a chunk with the name when the call opens, one with its whole
    arguments when it is complete; each part once, whether it comes while generating or from the message."""

    def __init__(self, send) -> None:
        self._send = send
        self._named: set[int] = set()
        self._argued: set[int] = set()

    def send(self, index: int, call_id: str, name: str, arguments: str | None) -> None:
        if index not in self._named:
            self._named.add(index)
            function = {"name": name, "arguments": ""}
            self._send({"tool_calls": [{"index": index, "id": call_id, "type": "function", "function": function}]})
        if arguments is not None and index not in self._argued:
            self._argued.add(index)
            self._send({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})


def _error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}


def make_server(
    service: ChatService, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None
) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"service": service, "api_key": api_key})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
