"""search_code (definitions, references, regex text) and repo_map."""

from __future__ import annotations

import fnmatch
from typing import ClassVar, Literal

from dsagent.tools.base import ToolArgs, ToolError, ToolResult
from dsagent.tools.code_index import Definition
from dsagent.tools.context import ToolContext
from dsagent.tools.text_search import MAX_HITS, MAX_TEXT_FILE, cap, is_test, search_text
from dsagent.tools.textfile import looks_binary, read_regular
from pydantic import Field

_KIND_ORDER = {
    "class": 0,
    "struct": 0,
    "interface": 0,
    "trait": 0,
    "enum": 0,
    "type": 1,
    "function": 1,
    "method": 2,
    "module": 2,
    "macro": 2,
    "constant": 3,
    "variable": 4,
}


class SearchCodeArgs(ToolArgs):
    query: str = Field(
        description="definition/reference: a symbol name, optionally qualified ('Class.method', 'mod::func'). "
        "text: a Python regular expression matched against each line."
    )
    kind: Literal["definition", "reference", "text"] = Field(
        "definition", description="What to find: where a symbol is defined, where it is used, or any text."
    )
    path: str | None = Field(None, description="Only search this file or directory, or paths matching this glob.")


class SearchCode:
    name: ClassVar[str] = "search_code"
    description: ClassVar[str] = (
        "Search the repository with a tree-sitter index (Python, JavaScript, TypeScript, Go, Rust): where a "
        "symbol is defined, where it is referenced, or a regex over all files git does not ignore. "
        "Hits are ranked and show path:line with the line itself."
    )
    args_model: ClassVar[type[ToolArgs]] = SearchCodeArgs
    mutates: ClassVar[bool] = False

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx

    def run(self, args: SearchCodeArgs) -> ToolResult:
        query = args.query.strip()
        if not query:
            raise ToolError("query is empty; give a symbol name or a regular expression")
        keep = self._path_filter(args.path)
        if args.kind == "text":
            return search_text(self.ctx, query, keep)
        index = self.ctx.fresh_index()
        if args.kind == "definition":
            return self._definitions(index, query, keep)
        return self._references(index, query, keep)

    def _path_filter(self, path: str | None):
        if not path or path.strip() in ("", "."):
            return lambda p: True
        if any(ch in path for ch in "*?["):
            pattern = path.strip().removeprefix("./")
            return lambda p: fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern + "/*")
        real = self.ctx.jail.resolve(path)
        if not real.exists():
            raise ToolError(f"path {path!r} does not exist; use list_dir to find it")
        rel = self.ctx.jail.relative(real)
        return lambda p: p == rel or p.startswith(rel + "/")

    def _definitions(self, index, query: str, keep) -> ToolResult:
        wanted = query.replace("::", ".")
        name = wanted.rsplit(".", 1)[-1]
        tiers: list[list[Definition]] = []
        exact = index.definitions(name)
        if "." in wanted:
            exact = [d for d in exact if d.qualified == wanted or d.qualified.endswith("." + wanted)] or exact
        tiers.append(exact)
        if not exact:
            lowered = name.lower()
            names = index.all_names()
            tiers.append([d for n, ds in names.items() if n.lower() == lowered for d in ds])
            tiers.append(
                [d for n, ds in names.items() if n.lower().startswith(lowered) and n.lower() != lowered for d in ds]
            )
            tiers.append(
                [d for n, ds in names.items() if lowered in n.lower() and not n.lower().startswith(lowered) for d in ds]
            )
        hits = []
        for tier in tiers:
            tier = [d for d in tier if keep(d.path)]
            tier.sort(key=lambda d: (_KIND_ORDER.get(d.kind, 5), is_test(d.path), d.path.count("/"), d.path, d.line))
            hits.extend(tier)
        if not hits:
            return ToolResult(
                text=f"no definition of {query!r} found in the index ({len(index.files)} source files); "
                "try kind='text' for other languages or strings",
                data={"matches": []},
            )
        note = "" if exact else f"no exact definition of {query!r}; closest names:\n"
        lines = [f"{d.path}:{d.line}: {d.signature}" + (f"  [in {d.scope}]" if d.scope else "") for d in hits]
        matches = [
            {
                "path": d.path,
                "line": d.line,
                "end_line": d.end_line,
                "kind": d.kind,
                "name": d.qualified,
                "text": d.signature,
            }
            for d in hits[:MAX_HITS]
        ]
        return ToolResult(text=note + cap(lines, "definitions"), data={"matches": matches})

    def _references(self, index, query: str, keep) -> ToolResult:
        name = query.replace("::", ".").rsplit(".", 1)[-1]
        found = [(p, line) for p, line in index.references(name) if keep(p)]
        if not found:
            defined = bool(index.definitions(name))
            why = "it is defined but never used elsewhere" if defined else "the name is not in the index"
            return ToolResult(
                text=f"no references to {name!r} found ({why}); kind='text' searches all text", data={"matches": []}
            )
        per_file: dict[str, list[int]] = {}
        for path, line in found:
            per_file.setdefault(path, []).append(line)
        order = sorted(per_file, key=lambda p: (is_test(p), -len(per_file[p]), p))
        lines, matches = [], []
        for path in order:
            source = self._lines(path)
            defs = index.file_definitions(path)
            for line in sorted(per_file[path]):
                text = source[line - 1].strip() if line <= len(source) else ""
                where = _enclosing(defs, line)
                lines.append(f"{path}:{line}: {text[:200]}" + (f"  [in {where}]" if where else ""))
                matches.append({"path": path, "line": line, "text": text[:200]})
        header = f"{len(found)} references to {name!r} in {len(per_file)} files:\n"
        return ToolResult(text=header + cap(lines, "references"), data={"matches": matches[:MAX_HITS]})

    def _read(self, path: str) -> str | None:
        data = read_regular(self.ctx.root / path, MAX_TEXT_FILE)
        return None if data is None or looks_binary(data) else data.decode("utf-8", errors="replace")

    def _lines(self, path: str) -> list[str]:
        text = self._read(path)
        return text.split("\n") if text is not None else []


def _enclosing(defs: list[Definition], line: int) -> str | None:
    inside = [d for d in defs if d.line <= line <= d.end_line]
    return max(inside, key=lambda d: d.line).qualified if inside else None


class RepoMapArgs(ToolArgs):
    focus: str | None = Field(
        None, description="Files, directories or symbol names to center the map on, separated by spaces."
    )
    max_tokens: int = Field(2048, ge=128, le=32768, description="Token budget for the map.")


class RepoMapTool:
    name: ClassVar[str] = "repo_map"
    description: ClassVar[str] = (
        "A map of the repository's most important definitions (signatures with line numbers, grouped by file), "
        "ranked by how the code references itself. Give focus to center it on files or symbols."
    )
    args_model: ClassVar[type[ToolArgs]] = RepoMapArgs
    mutates: ClassVar[bool] = False

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx

    def run(self, args: RepoMapArgs) -> ToolResult:
        self.ctx.fresh_index()
        repo_map = self.ctx.repo_map
        result = repo_map.render(args.focus, args.max_tokens)
        files = len(repo_map.index.files)
        header = f"Repository map: {result.definitions} definitions from {len(result.files)} of {files} files"
        if result.unknown_focus:
            header += f" (focus matched nothing for: {', '.join(result.unknown_focus)})"
        return ToolResult(
            text=header + "\n\n" + result.text,
            data={"files": result.files, "tokens": result.tokens, "unknown_focus": result.unknown_focus},
        )
