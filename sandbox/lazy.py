"""A sandbox that starts its container on the first command (for one-off tool calls)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from dsagent.sandbox.base import ExecResult


class LazySandbox:
    """Behaves like a DockerSandbox; settings are read for the workspace when the container starts."""

    def __init__(self, workspace: Path, settings: Any = None) -> None:
        self.workspace = Path(workspace).resolve()
        self._settings = settings
        self._inner: Any = None
        self._lock = threading.Lock()

    @property
    def settings(self) -> Any:
        if self._settings is None:
            from dsagent.config import load_settings

            self._settings = load_settings(self.workspace).settings.sandbox
        return self._settings

    def _started(self) -> Any:
        with self._lock:
            if self._inner is None:
                from dsagent.sandbox.container import DockerSandbox

                self._inner = DockerSandbox(self.workspace, self.settings).start()
            return self._inner

    def exec(self, command: str, timeout: float | None = None, env: dict[str, str] | None = None) -> ExecResult:
        return self._started().exec(command, timeout, env)

    def read_file(self, path: str, limit: int = 64 << 20) -> str:
        return self._started().read_file(path, limit)

    def cancel(self) -> None:
        if self._inner is not None:
            self._inner.cancel()

    def close(self) -> None:
        with self._lock:
            inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()
