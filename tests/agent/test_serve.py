"""The `openai` backend against `dsagent serve` running the tiny checkpoint on loopback: streaming tool
calls and reasoning_content, usage with cached tokens, auth errors, retries, and the CLI server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from agent_testkit import call, step
from dsagent.agent import Agent
from dsagent.agent.backend import BackendError, CompletionRequest
from dsagent.agent.local import LocalModel
from dsagent.agent.openai_backend import OpenAIBackend, api_messages, endpoint
from dsagent.agent.scripted import ScriptedBackend
from dsagent.agent.serve import ChatService, make_server
from dsagent.config import SamplingSettings, Settings
from dsagent.tools.base import Registry

KEY = "sk-test-7f3a"
SCRIPT = [
    step("Look at add first.", call("read_file", "c1", path="calc.py", end_line=2)),
    step("It subtracts.", call("finish", "c2", summary="add() subtracts")),
]


def serve(engine, script=None):
    service = ChatService(
        LocalModel(engine),
        "tiny",
        SamplingSettings(temperature=0.0),
        4096,
        script=ScriptedBackend(script) if script else None,
    )
    server = make_server(service, "127.0.0.1", 0, api_key=KEY)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def scripted_server(tiny_engine):
    server, url = serve(tiny_engine, SCRIPT)
    yield url
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_agent_over_openai_backend_against_serve(scripted_server, registry, project):
    tools = Registry([registry["read_file"], registry["finish"]])
    backend = OpenAIBackend(scripted_server, name="tiny", api_key=KEY)
    events = []
    agent = Agent(backend, tools, Settings(), None, events.append, system="You fix small bugs.")
    result = agent.run("why does test_add fail?")
    assert (result.reason, result.summary) == ("finished", "add() subtracts")
    reasoning = "".join(e.text for e in events if e.type == "reasoning_delta")
    assert reasoning == "Look at add first.It subtracts."
    started = [(e.name, e.arguments) for e in events if e.type == "tool_call_started"]
    assert started == [("read_file", {"path": "calc.py", "end_line": 2}), ("finish", {"summary": "add() subtracts"})]
    assert "return a - b" in [e for e in events if e.type == "tool_call_finished"][0].output
    first, second = [e for e in events if e.type == "usage"]
    assert not first.estimated and first.reused == 0 and first.prefilled == first.prompt_tokens
    # The server kept the session: step 2 reuses the whole step-1 prompt and completion.
    assert second.reused == first.prompt_tokens + first.generated
    assert second.prefilled == second.prompt_tokens - second.reused > 0
    backend.close()


def test_tool_calls_stream_as_they_are_written(tiny_engine):
    """Each call's name when its markup opens, its arguments when it closes; a call that fails its check (an
    unknown tool) is still sent, whole, from the finished message. Ids match between a call's chunks."""
    script = [step("Two at once.", call("read_file", "r1", path="calc.py"), call("no_such_tool", "n1", x=1))]
    server, url = serve(tiny_engine, script)
    try:
        tools = [{"type": "function", "function": {"name": "read_file", "parameters": {"required": ["path"]}}}]
        body = {"messages": [{"role": "user", "content": "look"}], "tools": tools, "stream": True}
        headers = {"authorization": f"Bearer {KEY}"}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=120) as r:
            chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    finally:
        server.shutdown()
        server.server_close()
    parts = [d["tool_calls"][0] for c in chunks if (d := c["choices"][0]["delta"]) and "tool_calls" in d]
    assert [(p["index"], "name" in p["function"]) for p in parts] == [(0, True), (0, False), (1, True), (1, False)]
    assert [parts[0]["function"]["name"], parts[2]["function"]["name"]] == ["read_file", "no_such_tool"]
    assert json.loads(parts[1]["function"]["arguments"]) == {"path": "calc.py"}
    assert json.loads(parts[3]["function"]["arguments"]) == {"x": 1}
    assert parts[0]["id"].startswith("call_") and parts[0]["id"] != parts[2]["id"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_streaming_and_plain_responses(tiny_engine):
    server, url = serve(tiny_engine)
    try:
        headers = {"authorization": f"Bearer {KEY}"}
        models = httpx.get(f"{url}/v1/models", headers=headers).json()
        assert models["data"][0]["id"] == "tiny" and models["data"][0]["scripted"] is False
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0}
        plain = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=120).json()
        usage = plain["usage"]
        assert plain["object"] == "chat.completion" and plain["choices"][0]["message"]["role"] == "assistant"
        assert 1 <= usage["completion_tokens"] <= 3 and usage["prompt_tokens_details"]["cached_tokens"] == 0
        follow = {
            **body,
            "messages": [*body["messages"], plain["choices"][0]["message"], {"role": "user", "content": "more"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=follow, headers=headers, timeout=120) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(line[6:]) for line in lines[:-1]]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] > 0  # the conversation prefix
        assert httpx.get(f"{url}/v1/nothing", headers=headers).status_code == 404
        bad = httpx.post(f"{url}/v1/chat/completions", json={"messages": []}, headers=headers)
        assert bad.status_code == 400 and "messages" in bad.json()["error"]["message"]
    finally:
        server.shutdown()
        server.server_close()


def test_auth_failure_is_one_clear_line_without_the_key(tiny_engine):
    server, url = serve(tiny_engine)
    try:
        backend = OpenAIBackend(url, name="tiny", api_key="sk-wrong-key-1")
        request = CompletionRequest([{"role": "user", "content": "hi"}], 2, SamplingSettings())
        with pytest.raises(BackendError) as failure:
            backend.complete(request, lambda k, t: None, threading.Event())
        assert failure.value.kind == "auth" and "HTTP 401" in str(failure.value)
        assert "DSAGENT_MODEL__API_KEY" in str(failure.value) and "sk-wrong" not in str(failure.value)
        assert "sk-wrong" not in repr(backend) and "sk-wrong" not in json.dumps(backend.identity)
    finally:
        server.shutdown()
        server.server_close()


def test_retries_429_and_5xx_before_the_answer_starts(tiny_engine):
    server, url = serve(tiny_engine)
    failures = iter([(503, None), (429, "0")])

    class Flaky(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return None

        def do_POST(self):  # the first requests fail; later ones are passed on to the real server
            body = self.rfile.read(int(self.headers["content-length"]))
            status, after = next(failures, (200, None))
            if status != 200:
                self.send_response(status)
                if after:
                    self.send_header("retry-after", after)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            upstream = httpx.post(
                url + self.path,
                content=body,
                headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
                timeout=120,
            )
            self.send_response(upstream.status_code)
            self.send_header("content-type", upstream.headers["content-type"])
            self.send_header("content-length", str(len(upstream.content)))
            self.end_headers()
            self.wfile.write(upstream.content)

    flaky = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=flaky.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend(f"http://127.0.0.1:{flaky.server_address[1]}/v1", name="tiny", backoff=0.01)
        request = CompletionRequest([{"role": "user", "content": "hi"}], 2, SamplingSettings(temperature=0.0))
        completion = backend.complete(request, lambda k, t: None, threading.Event())
        assert completion.usage.generated >= 1 and not completion.usage.estimated
        gone = OpenAIBackend("http://127.0.0.1:9/v1", name="tiny", retries=1, backoff=0.01)
        with pytest.raises(BackendError, match="after 2 tries"):
            gone.complete(request, lambda k, t: None, threading.Event())
    finally:
        for each in (flaky, server):
            each.shutdown()
            each.server_close()


def test_reasoning_goes_back_for_the_current_turn_only():
    messages = [
        {"role": "system", "content": "s", "tools": [{"type": "function", "function": {"name": "f"}}]},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "a", "reasoning_content": "old"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "", "reasoning_content": "new", "tool_calls": []},
    ]
    sent = api_messages(messages)
    assert "tools" not in sent[0] and "reasoning_content" not in sent[2]
    assert sent[4]["reasoning_content"] == "new"
    assert endpoint("http://h:1") == "http://h:1/v1/chat/completions"
    assert endpoint("https://api.example.com/v1/") == "https://api.example.com/v1/chat/completions"


@pytest.mark.slow
def test_dsagent_serve_command(tiny_ckpt: Path):
    exe = shutil.which("dsagent") or str(Path(sys.executable).parent / "dsagent")
    process = subprocess.Popen(
        [exe, "serve", str(tiny_ckpt), "--port", "0", "--name", "tiny"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    try:
        line = process.stdout.readline()
        assert "serving tiny on http://127.0.0.1:" in line, process.stderr.read() if not line else line
        url = line.split(" on ")[1].split()[0]
        assert httpx.get(f"{url}/models", timeout=30).json()["data"][0]["id"] == "tiny"
    finally:
        process.terminate()
        process.wait(timeout=30)
