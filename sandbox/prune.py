"""Remove sandbox containers that outlived their session (a crash, a killed process)."""

from __future__ import annotations

import os
import socket
from typing import Any

LABEL = "dsagent.sandbox"


def _owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's session: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune(client: Any, only_orphans: bool = False) -> list[str]:
    """Remove labelled sandbox containers; with `only_orphans`, only those whose owning process is gone."""
    removed = []
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        if only_orphans and _owner_alive(container.labels.get("dsagent.owner", "")):
            continue
        try:
            container.remove(force=True)
        except Exception:  # removed concurrently by its own session
            continue
        removed.append(container.name)
    return removed
