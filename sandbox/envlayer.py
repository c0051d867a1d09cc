"""A repository's environment layer: its test dependencies, installed on top of the sandbox image.

The packages are downloaded on the host (`pip download` into a wheelhouse: it goes wherever the
host's pip goes, mirrors and proxies included) and installed in a build container that has no
network (`pip install --no-index --find-links`); the container is committed as
`dsagent-env:<hash>`. The hash covers the requirement files, the base image and the install
command, so an unchanged repository reuses its layer.
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from dsagent.sandbox.base import SandboxError
from dsagent.sandbox.daemon import image_exists
from dsagent.sandbox.image import ImageFacts, Progress, image_facts

ENV_REPOSITORY = "dsagent-env"
EXTRAS = ("test", "tests", "testing", "dev")
REQUIREMENT_GLOBS = ("requirements*.txt", "*-requirements.txt", "requirements/*.txt")
DEFAULT_INSTALL = "pip install --no-index --find-links /wheelhouse -r /wheelhouse/requirements.txt"


def requirement_files(repo: Path, configured: list[str]) -> list[Path]:
    """The files whose content decides the layer: configured ones, or the usual names."""
    if configured:
        return [repo / name for name in configured if (repo / name).is_file()]
    found = {path for pattern in REQUIREMENT_GLOBS for path in repo.glob(pattern) if path.is_file()}
    if (repo / "pyproject.toml").is_file():
        found.add(repo / "pyproject.toml")
    return sorted(found)


def requirement_lines(repo: Path, files: list[Path]) -> list[str]:
    """Requirement specifiers from requirements files (includes inlined) and pyproject test extras."""
    lines: list[str] = []
    for path in files:
        if path.name == "pyproject.toml":
            lines += _pyproject_requirements(path)
        else:
            lines += _requirements_file(path, seen=set())
    return list(dict.fromkeys(lines))


def _requirements_file(path: Path, seen: set[Path]) -> list[str]:
    if path in seen or not path.is_file():
        return []
    seen.add(path)
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            lines += _requirements_file(path.parent / line.split(None, 1)[1], seen)
        elif line.startswith(("-e", "--editable", ".", "/", "-c", "--constraint")):
            continue  # the project itself and local paths are the workspace, not the environment
        else:
            lines.append(line)
    return lines


def _pyproject_requirements(path: Path) -> list[str]:
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, OSError):
        return []
    project = data.get("project", {})
    lines = [r for r in project.get("dependencies", []) if isinstance(r, str)]
    extras = project.get("optional-dependencies", {})
    groups = data.get("dependency-groups", {})
    for name in EXTRAS:
        lines += [r for r in extras.get(name, []) if isinstance(r, str)]
        lines += [r for r in groups.get(name, []) if isinstance(r, str)]
    return lines


def layer_key(files: list[Path], repo: Path, base_id: str, command: str) -> str:
    digest = hashlib.sha256(f"{base_id}\0{command}\0".encode())
    for path in files:
        digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ensure_env_image(
    client: Any, repo: Path, settings: Any, progress: Progress = print, force: bool = False, quiet: bool = False
) -> str:
    """The image tag to run for `repo`: its environment layer (built when missing), or the base image
    when the repository declares no dependencies. `quiet` reports only when something is built."""
    base = settings.image
    files = requirement_files(repo, settings.env_requirements)
    requirements = requirement_lines(repo, files)
    if not requirements and not settings.env_command:
        if not quiet:
            progress(f"{repo} declares no test dependencies; using {base}")
        return base
    command = settings.env_command or DEFAULT_INSTALL
    key = layer_key(files, repo, client.images.get(base).id, command)
    tag = f"{ENV_REPOSITORY}:{key}"
    if not force and image_exists(client, tag):
        if not quiet:
            progress(f"{tag} is up to date")
        return tag
    with tempfile.TemporaryDirectory(prefix="dsagent-wheelhouse-") as wheelhouse:
        house = Path(wheelhouse)
        (house / "requirements.txt").write_text("\n".join(requirements) + "\n")
        download(house, image_facts(client, base), progress)
        _install(client, base, tag, house, command, key, progress)
    return tag


def download(house: Path, facts: ImageFacts | None, progress: Progress) -> None:
    """Wheels for the image's Python and platform; sdists only when the host's Python is the same."""
    base = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--progress-bar",
        "off",
        "-d",
        str(house),
        "-r",
        str(house / "requirements.txt"),
    ]
    if facts is not None:
        progress(f"pip download for python {facts.python}, glibc {facts.glibc}, {facts.arch}")
        if _run(base + _target_flags(facts), progress) == 0:
            return
    host = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if facts is not None and facts.python != host:
        raise SandboxError(
            f"pip download found no wheels for python {facts.python} (see above) and the host's "
            f"python {host} cannot build them; pin versions that ship wheels, or set sandbox.env_command"
        )
    progress("pip download for the host's python (building wheels from source distributions)")
    if _run(base, progress) != 0:
        raise SandboxError(
            "pip download failed (see above); fix the requirements or the host's pip index settings, "
            "or set sandbox.env_layer = false"
        )
    for sdist in [p for p in house.iterdir() if p.name.endswith((".tar.gz", ".zip", ".tar.bz2"))]:
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(house), str(sdist)]
        if _run(argv, progress) != 0:
            raise SandboxError(f"building a wheel of {sdist.name} failed (see above)")
        sdist.unlink()


def _target_flags(facts: ImageFacts) -> list[str]:
    major, minor = facts.python.split(".")
    glibc_minor = int(facts.glibc.split(".")[1]) if facts.glibc.count(".") == 1 else 17
    flags = ["--only-binary=:all:", "--python-version", facts.python, "--implementation", "cp"]
    for abi in (f"cp{major}{minor}", "abi3", "none"):
        flags += ["--abi", abi]
    platforms = [f"manylinux_2_{m}_{facts.arch}" for m in range(glibc_minor, 16, -1)]
    platforms += [f"manylinux2014_{facts.arch}", f"manylinux2010_{facts.arch}", f"manylinux1_{facts.arch}"]
    for platform in platforms:
        flags += ["--platform", platform]
    return flags


def _run(argv: list[str], progress: Progress) -> int:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip():
            progress(line.rstrip())
    return process.wait()


def _install(client: Any, base: str, tag: str, house: Path, command: str, key: str, progress: Progress) -> None:
    progress(f"installing in a build container without network: {command}")
    container = client.containers.run(
        base,
        ["/bin/sh", "-c", command],
        detach=True,
        user="0:0",
        network_mode="none",
        name=f"dsagent-build-{secrets.token_hex(4)}",
        volumes={str(house): {"bind": "/wheelhouse", "mode": "ro"}},
    )
    try:
        last = ""
        for raw in container.logs(stream=True, follow=True):
            for line in raw.decode(errors="replace").splitlines():
                last = line or last
                progress(line)
        status = container.wait().get("StatusCode", 1)
        if status != 0:
            raise SandboxError(f"installing the environment layer failed (exit {status}): {last}")
        repository, _, name = tag.partition(":")
        container.commit(
            repository=repository,
            tag=name,
            changes=[f"LABEL dsagent.env={key} dsagent.image=env", 'CMD ["sleep", "infinity"]'],
        )
        progress(f"built {tag}")
    finally:
        container.remove(force=True)
