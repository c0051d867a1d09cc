"""`dsagent sandbox build`: the default sandbox image (Debian bookworm, python3, pip, venv, git, pytest).

From the configured base image when a registry is reachable (or the image is already present);
otherwise from a Debian rootfs made with `debootstrap --variant=minbase` against the host's own apt
mirror, then `docker import`. Either way a throwaway container finishes the image (a venv at
/opt/venv, docs and setuid bits stripped) and is committed under the tag. The tag carries a recipe
hash, so a second build with the same recipe returns at once.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsagent.sandbox.apt import debian_mirror
from dsagent.sandbox.base import SandboxError

Progress = Callable[[str], None]

SUITE = "bookworm"
PACKAGES = ("python3", "python3-pip", "python3-venv", "python3-pytest", "git", "ca-certificates", "procps")
RECIPE_VERSION = "1"
FINISH_SCRIPT = Path(__file__).with_name("finish.sh")
PATH = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def recipe() -> str:
    """Hash of everything that decides the image's content."""
    digest = hashlib.sha256()
    for part in (RECIPE_VERSION, SUITE, " ".join(PACKAGES), FINISH_SCRIPT.read_text()):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ImageFacts:
    """What a wheel must match to run in the image."""

    python: str  # "3.11"
    glibc: str  # "2.36"
    arch: str  # "x86_64"


def image_labels(client: Any, tag: str) -> dict[str, str] | None:
    import docker.errors

    try:
        return client.images.get(tag).labels or {}
    except docker.errors.ImageNotFound:
        return None


def image_facts(client: Any, tag: str) -> ImageFacts | None:
    labels = image_labels(client, tag) or {}
    if not all(f"dsagent.{key}" in labels for key in ("python", "glibc", "arch")):
        return None
    return ImageFacts(labels["dsagent.python"], labels["dsagent.glibc"], labels["dsagent.arch"])


def is_current(client: Any, tag: str) -> bool:
    labels = image_labels(client, tag)
    return labels is not None and labels.get("dsagent.recipe") == recipe()


def build_base_image(
    client: Any, tag: str, base_image: str, mirror: str | None = None, progress: Progress = print, force: bool = False
) -> str:
    """Build `tag` unless it already holds the current recipe; returns the tag."""
    if not force and is_current(client, tag):
        progress(f"{tag} is up to date (recipe {recipe()})")
        return tag
    if _have_or_pull(client, base_image, progress):
        progress(f"finishing {tag} from {base_image} (apt-get in a build container)")
        _finish(client, base_image, tag, install=True, progress=progress)
        return tag
    rootfs_tag = f"dsagent-rootfs:{recipe()}"
    _debootstrap_import(client, rootfs_tag, mirror, progress)
    try:
        _finish(client, rootfs_tag, tag, install=False, progress=progress)
    finally:
        client.images.remove(rootfs_tag, noprune=True)  # untag only: its layer is the image's parent
    return tag


def _have_or_pull(client: Any, image: str, progress: Progress) -> bool:
    if image_labels(client, image) is not None:
        return True
    repository, _, tag = _split_tag(image)
    progress(f"pulling {image} ...")
    try:
        for event in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if "error" in event:
                raise RuntimeError(event["error"])
    except Exception as exc:  # no registry here: take the offline route
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        progress(f"no registry reachable ({reason}); building a Debian rootfs with debootstrap instead")
        return False
    return True


def _split_tag(image: str) -> tuple[str, str, str]:
    """'host:5000/name:tag' -> ('host:5000/name', ':', 'tag')"""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "", ""
    return name, sep, tag


def _debootstrap_import(client: Any, rootfs_tag: str, mirror: str | None, progress: Progress) -> None:
    mirror = mirror or debian_mirror(SUITE)
    if mirror is None:
        raise SandboxError(f"no apt source for Debian {SUITE} in /etc/apt; pass --mirror URL of a Debian mirror")
    if os.geteuid() != 0:
        raise SandboxError(
            "building the image without a registry runs debootstrap, which needs root; run `sudo dsagent sandbox build`"
        )
    if shutil.which("debootstrap") is None:
        raise SandboxError("debootstrap is missing; install it (`apt-get install debootstrap`) and re-run")
    workdir = Path(tempfile.mkdtemp(prefix="dsagent-rootfs-"))
    try:
        rootfs = workdir / "rootfs"
        progress(f"debootstrap --variant=minbase {SUITE} from {mirror}")
        _stream(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(rootfs),
                mirror,
            ],
            progress,
            "debootstrap",
        )
        _trim(rootfs)
        progress(f"docker import {rootfs_tag}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        repository, _, tag = _split_tag(rootfs_tag)
        client.api.import_image_from_stream(iter(lambda: tar.stdout.read(1 << 20), b""), repository=repository, tag=tag)
        if tar.wait() != 0:
            raise SandboxError(f"tar of {rootfs} failed (exit {tar.returncode})")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


TRIM = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)


def _trim(rootfs: Path) -> None:
    """Drop package caches and docs before import (deleting them in a later layer would not shrink it)."""
    for folder in TRIM:
        for entry in (rootfs / folder).glob("*"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name != "lock":
                entry.unlink(missing_ok=True)


def _stream(argv: list[str], progress: Progress, what: str) -> None:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    assert process.stdout is not None
    last = ""
    for line in process.stdout:
        if line.strip():
            last = line.strip()
            progress(last)
    if process.wait() != 0:
        raise SandboxError(f"{what} failed (exit {process.returncode}): {last}")


def _finish(client: Any, source: str, tag: str, install: bool, progress: Progress) -> None:
    """Run finish.sh in a throwaway container from `source` and commit the result as `tag`."""
    argv = ["/bin/sh", "-c", FINISH_SCRIPT.read_text(), "finish", "1" if install else "0", *PACKAGES]
    container = client.containers.run(
        source,
        argv,
        detach=True,
        user="0:0",
        name=f"dsagent-build-{secrets.token_hex(4)}",
        network_mode="bridge" if install else "none",
    )
    try:
        lines = []
        for raw in container.logs(stream=True, follow=True):
            for line in raw.decode(errors="replace").splitlines():
                lines.append(line)
                progress(line)
        status = container.wait().get("StatusCode", 1)
        if status != 0:
            raise SandboxError(f"finishing the image failed (exit {status}): {lines[-1] if lines else 'no output'}")
        facts = next((line.split()[1:] for line in lines if line.startswith("dsagent-facts ")), None)
        if not facts or len(facts) != 3:
            raise SandboxError("finishing the image printed no python/glibc facts; is python3 installed?")
        labels = {
            "dsagent.recipe": recipe(),
            "dsagent.python": facts[0],
            "dsagent.glibc": facts[1],
            "dsagent.arch": facts[2],
            "dsagent.image": "base",
        }
        repository, _, name_tag = _split_tag(tag)
        changes = [
            f"ENV PATH={PATH}",
            "ENV LANG=C.UTF-8",
            "WORKDIR /workspace",
            'CMD ["sleep", "infinity"]',
            "LABEL " + " ".join(f"{k}={v}" for k, v in labels.items()),
        ]
        container.commit(repository=repository, tag=name_tag or "latest", changes=changes)
        progress(f"built {tag}: python {facts[0]}, glibc {facts[1]}, {facts[2]}")
    finally:
        container.remove(force=True)
