"""The code index: correctness against Python's own parser on a real package, language fixtures,
the content-addressed store and incremental updates."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dsagent.tools.code_index import CodeIndex
from dsagent.tools.code_parse import blob_sha
from dsagent.tools.registry import default_registry


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def _ast_definitions(source: str) -> set[tuple[str, str, int]]:
    """(name, kind, line) of every class, function and method Python's parser sees."""
    tree = ast.parse(source)
    found = set()
    methods = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        for child in node.body
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            found.add((node.name, "class", node.lineno))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.add((node.name, "method" if id(node) in methods else "function", node.lineno))
    return found


@pytest.mark.slow
def test_every_python_definition_matches_ast_on_a_real_package(git_repo: Path) -> None:
    import httpx

    package = Path(httpx.__file__).parent
    shutil.copytree(package, git_repo / "httpx", ignore=shutil.ignore_patterns("__pycache__"))
    sources = {p.relative_to(git_repo).as_posix(): p.read_text() for p in (git_repo / "httpx").rglob("*.py")}
    assert sum(s.count("\n") for s in sources.values()) > 3000  # a project of a few thousand lines

    # A cold build through the process pool (both cores, every file parsed in workers).
    index = CodeIndex(git_repo, git_repo / ".dsagent" / "index", workers=2, pool_min_files=1)
    stats = index.refresh()
    assert stats.parsed == len(sources) and stats.from_store == 0
    registry = default_registry(git_repo)
    checked = 0
    for rel, source in sources.items():
        expected = _ast_definitions(source)
        got = {
            (d.name, d.kind, d.line) for d in index.file_definitions(rel) if d.kind in ("class", "function", "method")
        }
        assert got == expected, f"{rel}: missing {expected - got}, extra {got - expected}"
        for name, _, line in expected:
            result = registry.call("search_code", {"query": name, "kind": "definition", "path": rel})
            assert result.ok and any(m["line"] == line and m["path"] == rel for m in result.data["matches"]), (
                f"search_code did not find {name} at {rel}:{line}: {result.text[:300]}"
            )
            checked += 1
    assert checked > 300
    index.close()


def test_store_is_keyed_by_blob_sha_and_updates_parse_only_changed_files(git_repo: Path) -> None:
    for i in range(6):
        (git_repo / f"m{i}.py").write_text(f"def f{i}(x):\n    return helper(x)\n")
    (git_repo / "util.py").write_text("def helper(x):\n    return x\n")
    _git(git_repo, "add", "-A")
    index_dir = git_repo / ".dsagent" / "index"
    first = CodeIndex(git_repo, index_dir)
    stats = first.refresh()
    assert (stats.parsed, stats.from_store, stats.files) == (7, 0, 7)
    sha = _git(git_repo, "hash-object", "util.py").strip()
    assert first.files["util.py"].sha == sha == blob_sha((git_repo / "util.py").read_bytes())
    assert (index_dir / ".gitignore").read_text() == "*\n"
    assert _git(git_repo, "status", "--porcelain", "--untracked-files=all") == "".join(
        f"A  {name}\n" for name in sorted([*(f"m{i}.py" for i in range(6)), "util.py"])
    )
    first.close()

    # A second process finds everything in the store; an unchanged refresh parses nothing.
    second = CodeIndex(git_repo, index_dir)
    stats = second.refresh()
    assert (stats.parsed, stats.from_store) == (0, 7)
    version = second.version
    time.sleep(0.06)  # past the racy window, so an unchanged file is trusted by its stat alone
    assert second.refresh().changed == [] and second.version == version

    # One file changes: only it is parsed; a file with the same content as another is not parsed.
    (git_repo / "m0.py").write_text("def renamed(x):\n    return helper(x)\n\nclass Extra:\n    pass\n")
    (git_repo / "copy.py").write_text((git_repo / "m1.py").read_text())
    stats = second.refresh()
    assert stats.parsed == 1 and stats.from_store == 1 and sorted(stats.changed) == ["copy.py", "m0.py"]
    assert second.version == version + 1
    assert [d.path for d in second.definitions("renamed")] == ["m0.py"]
    assert second.definitions("f0") == []
    assert sorted(p for p, _ in second.references("helper")) == ["copy.py", *(f"m{i}.py" for i in range(6))]

    (git_repo / "m2.py").unlink()
    stats = second.refresh()
    assert stats.removed == 1 and "m2.py" not in second.files and second.definitions("f2") == []
    second.close()


JS = """\
import { helper } from './util.js';

export function render(items) {
  return items.map(item => helper(item));
}

class Widget extends Base {
  constructor(name) { super(); this.name = name; }
  draw() { return render([this.name]); }
}

const format = (value) => `${value}`;
module.exports.legacy = function () { return format(1); };
export const LIMIT = 10;
"""

TS = """\
export interface Shape {
  area(): number;
}

export type Id = string | number;

enum Color { Red, Green }

export abstract class Base implements Shape {
  abstract area(): number;
  describe(id: Id): string { return `${id}: ${this.area()}`; }
}

export class Square extends Base {
  constructor(private side: number) { super(); }
  area(): number { return this.side * this.side; }
}

export function makeSquare(side: number): Square {
  return new Square(side);
}
"""

TSX = """\
import React from 'react';

interface Props { title: string }

export function Header({ title }: Props) {
  return <h1 className="title">{title}</h1>;
}

export const App = () => <Header title="hi" />;
"""

GO = """\
package shapes

import "math"

// Shape is anything with an area.
type Shape interface {
\tArea() float64
}

type Circle struct {
\tRadius float64
}

func (c *Circle) Area() float64 {
\treturn math.Pi * c.Radius * c.Radius
}

func Total(shapes []Shape) float64 {
\tsum := 0.0
\tfor _, s := range shapes {
\t\tsum += s.Area()
\t}
\treturn sum
}

const Unit = 1.0
"""

RUST = """\
use std::fmt;

pub trait Shape {
    fn area(&self) -> f64;
}

pub struct Circle {
    pub radius: f64,
}

impl Shape for Circle {
    fn area(&self) -> f64 {
        std::f64::consts::PI * self.radius * self.radius
    }
}

pub enum Kind { Round, Square }

pub fn total(shapes: &[Box<dyn Shape>]) -> f64 {
    shapes.iter().map(|s| s.area()).sum()
}

macro_rules! square { ($x:expr) => { $x * $x }; }

mod tests {
    fn check() -> f64 { super::total(&[]) }
}
"""

FIXTURES = {
    "web/app.js": (
        JS,
        {
            ("render", "function", 3, ""),
            ("Widget", "class", 7, ""),
            ("constructor", "method", 8, "Widget"),
            ("draw", "method", 9, "Widget"),
            ("format", "function", 12, ""),
            ("legacy", "function", 13, ""),
            ("LIMIT", "variable", 14, ""),
        },
        {"helper": [1, 4], "render": [9], "Base": [7], "format": [13], "map": [4]},
    ),
    "web/shapes.ts": (
        TS,
        {
            ("Shape", "interface", 1, ""),
            ("area", "method", 2, "Shape"),
            ("Id", "type", 5, ""),
            ("Color", "enum", 7, ""),
            ("Base", "class", 9, ""),
            ("area", "method", 10, "Base"),
            ("describe", "method", 11, "Base"),
            ("Square", "class", 14, ""),
            ("constructor", "method", 15, "Square"),
            ("area", "method", 16, "Square"),
            ("makeSquare", "function", 19, ""),
        },
        {"Shape": [9], "Id": [11], "Base": [14], "Square": [19, 20], "area": [11]},
    ),
    "web/header.tsx": (
        TSX,
        {("Props", "interface", 3, ""), ("Header", "function", 5, ""), ("App", "function", 9, "")},
        {"Props": [5], "Header": [9], "title": [3, 6, 9], "React": [1]},
    ),
    "go/shapes.go": (
        GO,
        {
            ("Shape", "interface", 6, ""),
            ("Area", "method", 7, "Shape"),
            ("Circle", "struct", 10, ""),
            ("Area", "method", 14, "Circle"),
            ("Total", "function", 18, ""),
            ("Unit", "constant", 26, ""),
        },
        {"Circle": [14], "Shape": [18], "Area": [21], "Radius": [15], "math": [15]},
    ),
    "rs/shapes.rs": (
        RUST,
        {
            ("Shape", "trait", 3, ""),
            ("area", "method", 4, "Shape"),
            ("Circle", "struct", 7, ""),
            ("area", "method", 12, "Circle"),
            ("Kind", "enum", 17, ""),
            ("total", "function", 19, ""),
            ("square", "macro", 23, ""),
            ("tests", "module", 25, ""),
            ("check", "function", 26, "tests"),
        },
        {"Shape": [11, 19], "Circle": [11], "area": [20], "total": [26], "radius": [13]},
    ),
}


@pytest.mark.parametrize("rel", sorted(FIXTURES))
def test_language_fixtures_definitions_and_references(git_repo: Path, rel: str) -> None:
    source, expected_defs, expected_refs = FIXTURES[rel]
    path = git_repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    index = CodeIndex(git_repo, git_repo / ".dsagent" / "index")
    index.refresh()
    got = {(d.name, d.kind, d.line, d.scope) for d in index.file_definitions(rel)}
    assert got == expected_defs, f"missing {expected_defs - got}, extra {got - expected_defs}"
    refs = index.files[rel].refs
    for name, lines in expected_refs.items():
        assert refs.get(name) == lines, f"{name}: {refs.get(name)} != {lines}"
    # A definition's own name is not a reference to it.
    for d in index.file_definitions(rel):
        assert d.line not in refs.get(d.name, []) or d.name in {"area", "Area", "title"}, d
    index.close()


def test_search_code_over_fixtures(git_repo: Path) -> None:
    for rel, (source, _, _) in FIXTURES.items():
        (git_repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (git_repo / rel).write_text(source)
    (git_repo / "notes.txt").write_text("Square roots are not squares\n")
    (git_repo / ".gitignore").write_text("ignored/\n")
    (git_repo / "ignored").mkdir()
    (git_repo / "ignored" / "x.ts").write_text("export class Square {}\n")
    registry = default_registry(git_repo)

    square = registry.call("search_code", {"query": "Square"})
    assert [(m["path"], m["line"]) for m in square.data["matches"]] == [("web/shapes.ts", 14)]
    area = registry.call("search_code", {"query": "Circle.area"})
    assert [(m["path"], m["line"]) for m in area.data["matches"]] == [("rs/shapes.rs", 12)]
    go_area = registry.call("search_code", {"query": "Area", "path": "go"})
    assert [m["line"] for m in go_area.data["matches"]] == [7, 14]
    fuzzy = registry.call("search_code", {"query": "makesq"})
    assert "no exact definition" in fuzzy.text and fuzzy.data["matches"][0]["name"] == "makeSquare"

    refs = registry.call("search_code", {"query": "Shape", "kind": "reference"})
    assert {(m["path"], m["line"]) for m in refs.data["matches"]} == {
        ("web/shapes.ts", 9),
        ("go/shapes.go", 18),
        ("rs/shapes.rs", 11),
        ("rs/shapes.rs", 19),
    }
    assert "[in Total]" in refs.text

    text = registry.call("search_code", {"query": r"Square\b", "kind": "text"})
    paths = {m["path"] for m in text.data["matches"]}
    assert paths == {"web/shapes.ts", "notes.txt", "rs/shapes.rs"}  # never the ignored directory
    assert "web/shapes.ts:14: export class Square extends Base {" in text.text
    loose = registry.call("search_code", {"query": "SQUARE ROOTS", "kind": "text"})
    assert "ignoring case" in loose.text and loose.data["matches"][0]["path"] == "notes.txt"
    broken = registry.call("search_code", {"query": "area(", "kind": "text", "path": "*.rs"})
    assert "not a valid regular expression" in broken.text
    assert {m["path"] for m in broken.data["matches"]} == {"rs/shapes.rs"}
    missing = registry.call("search_code", {"query": "Nothing", "kind": "reference"})
    assert missing.ok and "not in the index" in missing.text


@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        (r"def get_\w+_display", "def get_"),
        (r"(abc)?xyz", "xyz"),
        (r"colou?r_name", "r_name"),
        (r"[\]abc]def", "def"),
        (r"\bQuerySet\(", "QuerySet("),
        (r"foo|bar", None),
        ("(?i)hello", None),
        (r"x?yz", None),
    ],
)
def test_text_search_prefilters_on_a_literal_every_match_contains(pattern: str, literal: str | None) -> None:
    from dsagent.tools.text_search import required_literal

    assert required_literal(pattern) == literal


# A fresh process that looks like the TUI while it runs: Textual's print capture as sys.stderr (fileno() -1),
# another thread (so the pool runs from a fork server), and in-process parsing disabled, so only worker
# processes can index the files.
TUI_LIKE_CHILD = """
import sys, threading, time
from dsagent.tools import code_index
from dsagent.tools.context import ToolContext

class Capture:
    def write(self, text): return len(text)
    def flush(self): pass
    def fileno(self): return -1

def refuse(*args): raise AssertionError("parsed in-process")

if __name__ == "__main__":
    sys.stderr = Capture()
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    code_index.parse_source = refuse
    print(ToolContext(sys.argv[1]).fresh_index().counts())
"""


def test_a_cold_index_parses_in_worker_processes_under_a_captured_stderr(git_repo: Path, tmp_path: Path) -> None:
    from dsagent.tools.code_index import POOL_MIN_FILES

    for i in range(POOL_MIN_FILES + 12):
        (git_repo / f"m{i}.py").write_text(f"def f{i}(x):\n    return x + {i}\n\n\nclass K{i}:\n    pass\n")
    _git(git_repo, "add", "-A")
    _git(git_repo, "commit", "-qm", "files")
    child = tmp_path / "tui_like.py"
    child.write_text(TUI_LIKE_CHILD)
    done = subprocess.run([sys.executable, str(child), str(git_repo)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    files, definitions, _ = ast.literal_eval(done.stdout)  # (files, definitions, references)
    assert files == POOL_MIN_FILES + 12 and definitions == 2 * files
