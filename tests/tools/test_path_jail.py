"""The path jail: hostile paths are refused with a clear message and nothing outside is read or written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dsagent.tools.registry import default_registry

SECRET = b"outside secret\n"


@pytest.fixture
def jail(git_repo: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    repo = git_repo
    (repo / "sub").mkdir()
    (repo / "sub" / "ok.txt").write_text("inside\n")
    os.symlink(outside / "secret.txt", repo / "link_out")
    os.symlink(outside, repo / "dir_link")
    os.symlink(outside / "not-yet.txt", repo / "dangling_out")
    os.symlink(repo / "loop_b", repo / "loop_a")
    os.symlink(repo / "loop_a", repo / "loop_b")
    os.symlink("self_loop", repo / "self_loop")
    os.symlink("/dev/zero", repo / "dev_link")
    os.symlink(repo / ".git" / "config", repo / "git_link")
    os.mkfifo(repo / "fifo")
    return repo, outside


def hostile_paths(repo: Path, outside: Path) -> list[str]:
    return [
        "../outside/secret.txt",
        "../../etc/passwd",
        "sub/../../outside/secret.txt",
        "sub/../../../../../../../etc/passwd",
        "/etc/passwd",
        str(outside / "secret.txt"),
        f"{repo}/../outside/secret.txt",
        "/dev/zero",
        "/proc/self/environ",
        "link_out",
        "dir_link/secret.txt",
        "dangling_out",
        "loop_a",
        "self_loop",
        "dev_link",
        "fifo",
        ".git/config",
        ".git/hooks/pre-commit",
        "sub/../.git/HEAD",
        ".GIT/config",
        "git_link",
        "a\x00b.txt",
        "x" * 300,
        "a/" * 2100 + "f",
        "~/.ssh/id_rsa",
        "..\\..\\outside\\secret.txt",
        "file:///etc/passwd",
        "",
    ]


def _tree_state(root: Path) -> dict[str, bytes]:
    state = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                state[str(path)] = path.read_bytes()
    return state


def test_at_least_twenty_hostile_paths_are_refused_by_every_file_tool(jail) -> None:
    repo, outside = jail
    registry = default_registry(repo)
    paths = hostile_paths(repo, outside)
    assert len(paths) >= 20
    outside_before = _tree_state(outside)
    git_before = _tree_state(repo / ".git")
    calls = [
        ("read_file", lambda p: {"path": p}),
        ("write_file", lambda p: {"path": p, "content": "pwned\n"}),
        ("edit_file", lambda p: {"path": p, "old_string": "", "new_string": "pwned\n"}),
        ("edit_file", lambda p: {"path": p, "old_string": "outside", "new_string": "pwned"}),
        ("list_dir", lambda p: {"path": p}),
        ("search_code", lambda p: {"query": "secret", "kind": "text", "path": p}),
    ]
    for path in paths:
        for tool, make in calls:
            if tool == "search_code" and path == "":
                continue  # an empty path filter means the whole workspace
            result = registry.call(tool, make(path))
            assert not result.ok, f"{tool}({path!r}) was allowed: {result.text[:200]}"
            # A clear refusal from the jail, not a crash caught by the registry.
            assert f"{tool} failed:" not in result.text, result.text
            assert len(result.text.splitlines()) == 1 and len(result.text) < 400, result.text
            assert "pwned" not in result.text and "outside secret" not in result.text
    assert _tree_state(outside) == outside_before
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert _tree_state(repo / ".git") == git_before
    assert not (outside / "not-yet.txt").exists()
    # Bulk readers (text search, index) skip symlinks instead of following them out.
    everything = registry.call("search_code", {"query": "secret", "kind": "text"})
    assert "outside secret" not in everything.text


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("../outside/secret.txt", "outside the workspace"),
        ("/etc/passwd", "absolute path outside"),
        ("link_out", "symlink that leads outside"),
        ("dir_link/secret.txt", "symlink that leads outside"),
        ("loop_a", "symlink loop"),
        ("self_loop", "symlink loop"),
        ("dev_link", "symlink that leads outside"),
        ("fifo", "a FIFO"),
        (".git/config", "inside .git"),
        ("git_link", "inside .git"),
        ("a\x00b", "NUL byte"),
        ("x" * 300, "longer than 255 bytes"),
        ("~/.ssh/id_rsa", "not expanded"),
        ("", "path is empty"),
    ],
)
def test_refusals_say_why(jail, path: str, words: str) -> None:
    repo, _ = jail
    result = default_registry(repo).call("read_file", {"path": path})
    assert not result.ok
    assert words in result.text, result.text


def test_paths_inside_are_accepted(jail) -> None:
    repo, _ = jail
    os.symlink("sub/ok.txt", repo / "inner_link")
    registry = default_registry(repo)
    for path in [
        "sub/ok.txt",
        "./sub/ok.txt",
        "sub/../sub/ok.txt",
        str(repo / "sub" / "ok.txt"),
        "inner_link",
        "sub\\ok.txt",
    ]:
        result = registry.call("read_file", {"path": path})
        assert result.ok, (path, result.text)
        assert "inside" in result.text
    assert registry.call("write_file", {"path": "sub/new/deep.txt", "content": "x\n"}).ok
    assert (repo / "sub" / "new" / "deep.txt").read_text() == "x\n"
    assert registry.call("read_file", {"path": ".gitignore_missing"}).ok is False
    (repo / ".gitignore").write_text("*.log\n")
    assert registry.call("read_file", {"path": ".gitignore"}).ok  # '.git' prefix alone is not '.git/'


def test_writing_through_a_hard_link_never_changes_the_outside_file(jail) -> None:
    repo, outside = jail
    os.link(outside / "secret.txt", repo / "hard.txt")
    result = default_registry(repo).call("write_file", {"path": "hard.txt", "content": "new\n"})
    assert result.ok
    assert (repo / "hard.txt").read_text() == "new\n"
    assert (outside / "secret.txt").read_bytes() == SECRET
