"""Starting `dsagent serve` from the command line."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def run_server(
    path: Path,
    port: int,
    host: str,
    name: str | None,
    script: Path | None,
    overrides: list[str] | None,
    gpus: int | None = None,
) -> None:
    from dsagent.agent.backend import BackendError
    from dsagent.agent.local import LocalModel, load_engine
    from dsagent.agent.scripted import ScriptedBackend
    from dsagent.agent.serve import ChatService, make_server
    from dsagent.cli import console, err_console, fail, settings_from_cli
    from rich.markup import escape

    settings = settings_from_cli(None, f"local:{path}", overrides, **{"model.gpus": gpus}).settings
    try:
        engine = load_engine(settings)
        replay = ScriptedBackend.from_file(script) if script else None
    except BackendError as exc:
        raise fail(str(exc), 2 if exc.kind == "config" else 3) from None
    max_context = min(settings.model.max_context, engine.config.max_position_embeddings)
    service = ChatService(
        LocalModel(engine), name or Path(path).resolve().name, settings.model.sampling, max_context, script=replay
    )
    try:
        server = make_server(service, host, port, api_key=os.environ.get("DSAGENT_SERVE_API_KEY") or None)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port", 3) from None
    bound = server.server_address[1]
    if not is_loopback(host):
        err_console.print(
            f"[yellow]warning:[/] listening on {host}, not loopback: anyone who reaches this "
            "address can use the model (set DSAGENT_SERVE_API_KEY to require a key)"
        )
    label = " [bold yellow](scripted: assistant turns come from " + escape(str(script)) + ")[/]" if script else ""
    console.print(f"serving {escape(service.name)} on http://{host}:{bound}/v1{label}", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
