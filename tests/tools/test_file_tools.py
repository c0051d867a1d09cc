"""read_file, write_file, list_dir, finish and the registry's schemas."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from dsagent.tools.registry import default_registry


def test_read_file_numbers_lines_and_reads_ranges(git_repo: Path) -> None:
    (git_repo / "a.py").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    registry = default_registry(git_repo)
    whole = registry.call("read_file", {"path": "a.py"})
    assert whole.ok
    assert whole.text.splitlines()[0] == "a.py (lines 1-10 of 10)"
    assert "     3\tline 3" in whole.text and "more lines follow" not in whole.text
    part = registry.call("read_file", {"path": "a.py", "start_line": 4, "end_line": 5})
    assert part.text.splitlines() == [
        "a.py (lines 4-5 of 10)",
        "     4\tline 4",
        "     5\tline 5",
        "[more lines follow; continue with start_line=6]",
    ]
    past = registry.call("read_file", {"path": "a.py", "start_line": 50})
    assert not past.ok and "has 10 lines" in past.text
    backwards = registry.call("read_file", {"path": "a.py", "start_line": 5, "end_line": 2})
    assert not backwards.ok and "before start_line" in backwards.text


def test_read_file_guards(git_repo: Path) -> None:
    registry = default_registry(git_repo)
    (git_repo / "blob.bin").write_bytes(b"\x89PNG\x00\x00data")
    (git_repo / "big.txt").write_text("x\n" * 5000)
    (git_repo / "latin.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (git_repo / "wide.txt").write_text("y" * 5000 + "\n")
    (git_repo / "empty.txt").write_text("")
    binary = registry.call("read_file", {"path": "blob.bin"})
    assert not binary.ok and "binary file" in binary.text
    big = registry.call("read_file", {"path": "big.txt"})
    assert big.ok and "lines 1-2000 of 5000" in big.text and "start_line=2001" in big.text
    latin = registry.call("read_file", {"path": "latin.txt"})
    assert latin.ok and "caf\ufffd" in latin.text and "not valid UTF-8" in latin.text
    wide = registry.call("read_file", {"path": "wide.txt"})
    assert "3000 more characters" in wide.text and len(wide.text) < 2200
    assert registry.call("read_file", {"path": "empty.txt"}).text == "empty.txt is empty (0 lines)"
    assert "is a directory" in registry.call("read_file", {"path": "."}).text
    assert "does not exist" in registry.call("read_file", {"path": "missing.py"}).text


def test_write_file_creates_overwrites_and_returns_diffs(git_repo: Path) -> None:
    registry = default_registry(git_repo)
    created = registry.call("write_file", {"path": "pkg/mod.py", "content": "a = 1\n"})
    assert created.ok and created.text.startswith("Created pkg/mod.py (1 lines, +1 -0)")
    assert created.data["diff"].startswith("--- /dev/null\n+++ b/pkg/mod.py\n")
    over = registry.call("write_file", {"path": "pkg/mod.py", "content": "a = 2\n"})
    assert over.ok and "-a = 1\n+a = 2" in over.data["diff"]
    (git_repo / "dos.txt").write_bytes(b"one\r\ntwo\r\n")
    dos = registry.call("write_file", {"path": "dos.txt", "content": "one\nthree\n"})
    assert (git_repo / "dos.txt").read_bytes() == b"one\r\nthree\r\n" and "CRLF" in dos.text
    os.chmod(git_repo / "pkg" / "mod.py", 0o755)
    registry.call("write_file", {"path": "pkg/mod.py", "content": "a = 3\n"})
    assert os.stat(git_repo / "pkg" / "mod.py").st_mode & 0o777 == 0o755
    assert not registry.call("write_file", {"path": "pkg", "content": "x"}).ok


def test_list_dir_respects_gitignore_and_depth(git_repo: Path) -> None:
    (git_repo / ".gitignore").write_text("build/\n*.log\n")
    for rel in ["src/app.py", "src/lib/util.py", "src/lib/deep/x.py", "build/out.o", "debug.log", "docs/a.md"]:
        path = git_repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n")
    registry = default_registry(git_repo)
    top = registry.call("list_dir", {"depth": 1})
    assert top.ok
    lines = top.text.splitlines()
    assert lines[0] == "./ (6 files)"
    assert "src/ (3 files)" in lines and "docs/ (1 files)" in lines and "README.md" in lines
    assert not any("build" in line or "debug.log" in line for line in lines)
    deep = registry.call("list_dir", {"path": "src", "depth": 2})
    assert deep.text.splitlines() == ["src/ (3 files)", "lib/", "  deep/ (1 files)", "  util.py", "app.py"]
    assert "is a file" in registry.call("list_dir", {"path": "src/app.py"}).text
    ignored = registry.call("list_dir", {"path": "build"})
    assert ignored.ok and "ignored by .gitignore" in ignored.text
    # A new file shows up right away (the listing notices the directory changed).
    (git_repo / "src" / "new.py").write_text("y\n")
    assert "new.py" in registry.call("list_dir", {"path": "src", "depth": 1}).text


def test_list_dir_outside_git(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("x")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "junk.js").write_text("x")
    result = default_registry(tmp_path).call("list_dir", {})
    assert result.ok and "a/" in result.text and "node_modules" not in result.text


def test_finish_records_the_summary(git_repo: Path) -> None:
    result = default_registry(git_repo).call("finish", {"summary": "  Fixed the bug; tests pass.  "})
    assert result.ok and result.data == {"finished": True, "summary": "Fixed the bug; tests pass."}


def test_schemas_describe_every_argument_and_mutation_flags_are_right(git_repo: Path) -> None:
    registry = default_registry(git_repo)
    assert registry.names() == ["read_file", "list_dir", "search_code", "repo_map", "edit_file", "write_file", "finish"]
    for spec in registry.schemas():
        params = spec["function"]["parameters"]
        assert spec["function"]["description"]
        for name, prop in params["properties"].items():
            assert prop.get("description"), f"{spec['function']['name']}.{name} has no description"
    required = {s["function"]["name"]: s["function"]["parameters"].get("required", []) for s in registry.schemas()}
    assert required["edit_file"] == ["path", "old_string", "new_string"]
    assert required["search_code"] == ["query"] and required["repo_map"] == []
    mutating = {name for name in registry.names() if registry[name].mutates}
    assert mutating == {"edit_file", "write_file"}
    bad = registry.call("read_file", {"path": "a", "bogus": 1})
    assert not bad.ok and "bogus" in bad.text


def test_tool_results_never_touch_git_state(git_repo: Path) -> None:
    registry = default_registry(git_repo)
    registry.call("write_file", {"path": "n.py", "content": "def f():\n    return 1\n"})
    registry.call("search_code", {"query": "f"})
    registry.call("repo_map", {})
    status = subprocess.run(["git", "status", "--porcelain"], cwd=git_repo, capture_output=True, text=True).stdout
    assert status == "?? n.py\n"  # the index cache under .dsagent/ ignores itself


def test_files_written_by_tools_join_the_listing_unless_ignored(git_repo: Path) -> None:
    (git_repo / ".gitignore").write_text("*.log\n")
    registry = default_registry(git_repo, external_changes=False)
    assert "README.md" in registry.call("list_dir", {}).text
    registry.call("write_file", {"path": "pkg/fresh.py", "content": "def fresh():\n    pass\n"})
    registry.call("write_file", {"path": "run.log", "content": "noise\n"})
    listing = registry.call("list_dir", {"depth": 2}).text
    assert "fresh.py" in listing and "run.log" not in listing
    assert registry.call("search_code", {"query": "fresh"}).data["matches"][0]["path"] == "pkg/fresh.py"
    assert registry.call("search_code", {"query": "noise", "kind": "text"}).data["matches"] == []
