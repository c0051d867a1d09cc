"""Find the Debian mirror this host already uses, from its apt configuration.

Both formats are read: one-line `deb [options] URI SUITE COMPONENT...` in sources.list and *.list,
and deb822 stanzas (`Types:`, `URIs:`, `Suites:`, `Components:`) in *.sources. Disabled entries
(`Enabled: no`, commented lines, files with other extensions) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    origin: str  # file it came from


def _one_line_sources(text: str, origin: str) -> list[AptSource]:
    found = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        rest = line[4:].strip()
        if rest.startswith("["):  # options such as [arch=amd64 signed-by=...]
            rest = rest.split("]", 1)[1].strip() if "]" in rest else ""
        parts = rest.split()
        if len(parts) >= 2:
            found.append(AptSource(parts[0], (parts[1],), tuple(parts[2:]), origin))
    return found


def _deb822_sources(text: str, origin: str) -> list[AptSource]:
    found = []
    for stanza in _stanzas(text):
        if "deb" not in stanza.get("types", "").split():
            continue
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(stanza.get("suites", "").split())
        components = tuple(stanza.get("components", "").split())
        for uri in stanza.get("uris", "").split():
            found.append(AptSource(uri, suites, components, origin))
    return found


def _stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
            continue
        if raw[0] in " \t" and key:  # continuation line
            current[key] += " " + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if sep:
            key = name.strip().lower()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def host_sources(root: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every enabled `deb` source of the host, in the order apt reads them."""
    sources: list[AptSource] = []
    main_list = root / "sources.list"
    if main_list.is_file():
        sources += _one_line_sources(main_list.read_text(errors="replace"), str(main_list))
    parts = root / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                sources += _one_line_sources(path.read_text(errors="replace"), str(path))
            elif path.suffix == ".sources":
                sources += _deb822_sources(path.read_text(errors="replace"), str(path))
    return sources


def debian_mirror(suite: str = "bookworm", root: Path = Path("/etc/apt")) -> str | None:
    """The URI of the first source that serves `suite` with the main component, else None."""
    for source in host_sources(root):
        if suite in source.suites and "main" in source.components:
            return source.uri.rstrip("/")
    return None
