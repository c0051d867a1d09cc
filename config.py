"""Settings: one pydantic-settings root, read in layers.

defaults < ~/.config/dsagent/config.toml < <repo>/.dsagent.toml < DSAGENT_* environment < CLI flags.
Every layer is read on its own so that `dsagent config show` can say where each value came from.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

ENV_PREFIX = "DSAGENT_"
REPO_FILE = ".dsagent.toml"


class ConfigError(Exception):
    """A configuration problem, described in one line that names where to fix it."""


class Section(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", validate_assignment=True)


class SamplingSettings(Section):
    temperature: float = Field(0.6, ge=0.0)
    """Sampling temperature; 0 means greedy decoding."""
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches this mass."""
    top_k: int = Field(0, ge=0)
    """Keep only the k most likely tokens before sampling; 0 keeps all."""
    seed: int | None = None
    """Seed for reproducible sampling; unset draws a fresh one per run."""
    max_new_tokens: int = Field(8192, gt=0)
    """Most tokens the model may generate in one assistant step."""


class ModelSettings(Section):
    backend: Literal["local", "openai", "scripted"] = "local"
    """Who writes the assistant's turns: the in-process engine, an OpenAI-compatible endpoint, or a
    scripted replay of recorded messages (for tests and demos)."""
    path: str | None = None
    """Checkpoint folder (local), endpoint URL (openai) or JSONL file of assistant messages (scripted)."""
    name: str | None = None
    """Model name sent to an OpenAI-compatible endpoint (`openai:URL#name`)."""
    api_key: SecretStr | None = None
    """API key for the openai backend; read from config or environment, never logged."""
    device: str = "auto"
    """Torch device for the local engine: auto, cpu, cuda, cuda:N."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Compute dtype of the local engine; auto picks bfloat16 on GPU and float32 on CPU."""
    gpus: int = Field(1, ge=1)
    """Processes the local engine splits the model over, one GPU each (NCCL): attention heads, routed experts
    and the vocabulary are divided between them. With device cpu they are CPU processes over gloo (testing)."""
    gpu_graphs: bool = False
    """With gpus > 1: decode by replaying a CUDA graph of the step on every GPU, as one GPU always does
    (one layer's step: 0.74 ms against ~8 ms launched from Python). Opt-in while it is new."""
    max_context: int = Field(65536, gt=0)
    """Longest prompt + completion in tokens; older tool output is elided to stay under it."""
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    """How tokens are drawn from the model's distribution."""


class SandboxSettings(Section):
    image: str = "dsagent-sandbox:latest"
    """Docker image the session container runs (built by `dsagent sandbox build`)."""
    network: bool = False
    """Give the container network access; off by default so commands cannot reach anything."""
    memory: str = "4g"
    """Container memory limit (docker syntax: 512m, 4g)."""
    cpus: float = Field(2.0, gt=0)
    """CPU limit of the container, in cores."""
    pids: int = Field(512, gt=0)
    """Most processes and threads the container may hold at once (stops fork bombs)."""
    command_timeout: float = Field(300.0, gt=0)
    """Default seconds a command may run before its whole process group is killed."""
    test_command: str | None = None
    """Command that runs the tests; unset detects it (pytest, go test, cargo test, npm test)."""
    user: str | None = None
    """uid:gid that commands run as inside the container; unset uses the host user's, so files it
    creates in the workspace belong to you."""
    base_image: str = "debian:bookworm-slim"
    """Registry image `dsagent sandbox build` starts from when a registry is reachable; without one it
    makes a Debian rootfs with debootstrap from the host's apt mirror."""
    tmp_size: str = "1g"
    """Size of the writable tmpfs at /tmp (the rest of the root filesystem is read-only)."""
    max_output: int = Field(256 * 1024 * 1024, gt=0)
    """Most bytes of output one command may print before it is stopped (only head and tail are kept)."""
    env_layer: bool = True
    """Install the repository's test dependencies in an environment layer on top of the image (built
    once per set of requirement files); off runs the image as it is."""
    env_requirements: list[str] = Field(default_factory=list)
    """Requirements files whose packages form the repository's environment layer; empty detects
    requirements*.txt and pyproject test/dev extras."""
    env_command: str | None = None
    """Command that installs the environment layer inside the image, offline (wheels are in /wheelhouse);
    unset runs pip install --no-index on the detected requirements."""


class AgentSettings(Section):
    max_steps: int = Field(50, gt=0)
    """Most model steps (one completion and its tool calls) in one run."""
    max_wall_time: float = Field(1800.0, gt=0)
    """Most seconds one run may take before it stops cleanly."""
    max_generated_tokens: int = Field(200_000, gt=0)
    """Most tokens the model may generate over one run."""
    approval: Literal["auto", "ask", "read-only"] = "auto"
    """auto runs every tool; ask asks before edits and commands; read-only refuses them."""
    thinking: bool = True
    """Let the model reason in <think> blocks before acting."""


class UISettings(Section):
    theme: str = "textual-dark"
    """Textual theme of the TUI (textual-dark, textual-light, ...)."""
    show_reasoning: bool = True
    """Stream the model's reasoning into a collapsible block."""


class Settings(BaseSettings):
    """The effective configuration: all layers merged."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        use_attribute_docstrings=True,
        extra="forbid",
    )

    model: ModelSettings = Field(default_factory=ModelSettings)
    """The model and the backend that runs it."""
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    """The Docker container where commands and tests run."""
    agent: AgentSettings = Field(default_factory=AgentSettings)
    """The agent loop: limits, approvals, thinking."""
    ui: UISettings = Field(default_factory=UISettings)
    """The terminal UI."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **_sources):
        # Layers are merged by `load_settings` so each value's origin is known; the root only
        # validates the merged result.
        return (init_settings,)


@dataclass
class Layer:
    name: str  # "default", "user", "repo", "env", "flag"
    origin: str  # file path, "DSAGENT_*", "command line"
    values: dict[str, Any]
    path: Path | None = None


@dataclass
class LoadedSettings:
    settings: Settings
    layers: list[Layer]
    sources: dict[str, str] = field(default_factory=dict)  # dotted key -> origin


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dsagent" / "config.toml"


def find_repo_root(start: Path) -> Path:
    """The enclosing git work tree of `start`, or `start` itself outside git."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return candidate
    return start


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror
        raise ConfigError(f"{path}: cannot read config file ({reason}); fix its permissions or remove it") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
        reason = str(exc).split(" (at line")[0]
        raise ConfigError(f"{path}:{line}: invalid TOML: {reason}; fix the syntax on that line") from None


def _line_from_message(message: str) -> int:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else 1


def _env_values() -> dict[str, Any]:
    source = EnvSettingsSource(Settings, env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False)
    try:
        return source()
    except Exception as exc:  # pydantic-settings raises SettingsError on undecodable JSON values
        raise ConfigError(f"environment: {exc}; fix or unset the DSAGENT_* variable") from None


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """{"model.sampling.seed": 1} -> {"model": {"sampling": {"seed": 1}}}"""
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def collect_layers(repo: Path | None = None, flags: dict[str, Any] | None = None) -> list[Layer]:
    layers = []
    user = user_config_path()
    if user.is_file():
        layers.append(Layer("user", str(user), _read_toml(user), user))
    if repo is not None:
        repo_file = find_repo_root(repo) / REPO_FILE
        if repo_file.is_file():
            layers.append(Layer("repo", str(repo_file), _read_toml(repo_file), repo_file))
    env = _env_values()
    if env:
        layers.append(Layer("env", "environment (DSAGENT_*)", env))
    if flags:
        layers.append(Layer("flag", "command line", unflatten({k: v for k, v in flags.items() if v is not None})))
    return layers


def load_settings(repo: Path | None = None, flags: dict[str, Any] | None = None) -> LoadedSettings:
    """Merge every layer, validate, and remember which layer set each value.

    `flags` maps dotted keys ("agent.max_steps") to values given on the command line.
    """
    layers = collect_layers(Path.cwd() if repo is None else repo, flags)
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        _merge(merged, layer.values)
        for key in _flatten(layer.values):
            sources[key] = layer.origin
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, layers)) from None
    return LoadedSettings(settings, layers, sources)


def _explain(exc: ValidationError, layers: list[Layer]) -> str:
    error = exc.errors()[0]
    dotted = ".".join(str(part) for part in error["loc"])
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown setting (see `dsagent config show` for the valid ones)"
    for layer in reversed(layers):
        if _has_key(layer.values, error["loc"]):
            if layer.path is not None:
                line = _line_of(layer.path, error["loc"])
                return f"{layer.path}:{line}: {dotted}: {message}; fix or remove that line"
            if layer.name == "env":
                var = ENV_PREFIX + "__".join(str(p) for p in error["loc"]).upper()
                return f"environment {var}: {message}; fix or unset it"
            return f"command line {dotted}: {message}"
    return f"config {dotted}: {message}"


def _has_key(values: dict[str, Any], loc: tuple) -> bool:
    node: Any = values
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _line_of(path: Path, loc: tuple) -> int:
    """Line number of the key at `loc` in a TOML file: under its [table] header, or dotted inline."""
    *tables, leaf = (str(p) for p in loc)
    current: list[str] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        header = re.fullmatch(r"\[\s*([\w.\- ]+?)\s*\]", line)
        if header:
            current = [part.strip() for part in header.group(1).split(".")]
            continue
        key = re.match(r"([\w.\-\" ]+?)\s*=", line)
        if key:
            full = current + [part.strip().strip('"') for part in key.group(1).split(".")]
            if full == [*tables, leaf] or full == tables:
                return number
    return 1


def describe_fields(settings: Settings, sources: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """(dotted key, effective value, origin, docstring) for every leaf field."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(model: BaseModel, prefix: str) -> None:
        for name, info in type(model).model_fields.items():
            value = getattr(model, name)
            dotted = prefix + name
            if isinstance(value, BaseModel):
                walk(value, dotted + ".")
                continue
            shown = "********" if isinstance(value, SecretStr) else repr(value)
            rows.append((dotted, shown, sources.get(dotted, "default"), (info.description or "").strip()))

    walk(settings, "")
    return rows


def parse_model_spec(spec: str) -> dict[str, Any]:
    """`local:PATH` | `openai:URL[#name]` | `scripted:FILE` -> dotted flag values."""
    backend, sep, rest = spec.partition(":")
    if not sep or backend not in ("local", "openai", "scripted") or not rest:
        raise ConfigError(f"--model {spec!r}: expected local:PATH, openai:URL[#model-name] or scripted:FILE")
    flags: dict[str, Any] = {"model.backend": backend, "model.path": rest}
    if backend == "openai" and "#" in rest:
        url, _, name = rest.partition("#")
        flags.update({"model.path": url, "model.name": name})
    return flags
