"""repo_map: ranking by the reference graph, focus, token budget, and the graph kept in memory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dsagent.tools.base import ToolArgs, ToolResult
from dsagent.tools.registry import default_registry
from dsagent.tools.repo_map import estimate_tokens

FILES = {
    "core/engine.py": """\
class Engine:
    def __init__(self, name):
        self.name = name

    def run(self, job):
        return job(self)

    def stop(self):
        return None


def make_engine(name):
    return Engine(name)
""",
    "core/text.py": """\
def slugify(value):
    return value.lower().replace(" ", "-")


def _private_helper():
    return 1
""",
    "app/main.py": """\
from core.engine import Engine, make_engine
from core.text import slugify


def main():
    engine = make_engine(slugify("Main App"))
    engine.run(print)
    return Engine
""",
    "app/cli.py": """\
from core.engine import Engine
from core.text import slugify


def cli(argv):
    return Engine(slugify(argv[0])).run(print)
""",
    "app/web.py": """\
from core.engine import Engine


def serve():
    return Engine("web").stop()
""",
    "plugins/extra.py": """\
def plugin_entry():
    return "extra"


class PluginRegistry:
    def register(self, plugin):
        return plugin
""",
}


@pytest.fixture
def repo(git_repo: Path) -> Path:
    for rel, text in FILES.items():
        path = git_repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return git_repo


def _files_in(text: str) -> list[str]:
    return re.findall(r"^(\S+):$", text, flags=re.MULTILINE)


def test_most_referenced_code_comes_first_with_methods_under_their_class(repo: Path) -> None:
    result = default_registry(repo).call("repo_map", {})
    assert result.ok, result.text
    files = _files_in(result.text)
    assert files[0] == "core/engine.py"
    assert files.index("core/text.py") < files.index("plugins/extra.py")
    outline = "     1: class Engine:\n     2:     def __init__(self, name):\n     5:     def run(self, job):"
    assert outline in result.text
    assert "    12: def make_engine(name):" in result.text


def test_the_budget_is_respected(repo: Path) -> None:
    registry = default_registry(repo)
    for budget in (128, 200, 400):
        result = registry.call("repo_map", {"max_tokens": budget})
        body = result.text.split("\n\n", 1)[1]
        assert estimate_tokens(body) <= budget
    small = registry.call("repo_map", {"max_tokens": 128}).text
    assert "class Engine" in small and "plugin_entry" not in small
    assert not registry.call("repo_map", {"max_tokens": 10}).ok  # below the schema's minimum


def test_focus_on_a_file_and_on_a_symbol(repo: Path) -> None:
    registry = default_registry(repo)
    on_file = registry.call("repo_map", {"focus": "plugins/extra.py", "max_tokens": 128}).text
    assert "plugin_entry" in on_file and "class PluginRegistry" in on_file
    on_symbol = registry.call("repo_map", {"focus": "slugify", "max_tokens": 128}).text
    assert _files_in(on_symbol)[0] == "core/text.py"
    assert "     1: def slugify(value):" in on_symbol
    unknown = registry.call("repo_map", {"focus": "no_such_thing core"})
    assert "focus matched nothing for: no_such_thing" in unknown.text
    assert unknown.data["unknown_focus"] == ["no_such_thing"]


def test_graph_stays_in_memory_until_a_file_changes(repo: Path) -> None:
    registry = default_registry(repo)
    registry.call("repo_map", {})
    repo_map = registry.context.repo_map
    graph = repo_map.graph()
    registry.call("repo_map", {"focus": "slugify"})
    assert repo_map.graph() is graph  # nothing changed: no rebuild

    edit = registry.call(
        "edit_file", {"path": "app/web.py", "old_string": "def serve():", "new_string": "def serve_forever():"}
    )
    assert edit.ok
    result = registry.call("repo_map", {"focus": "app/web.py"})
    assert repo_map.graph() is not graph
    assert "def serve_forever():" in result.text and "def serve():" not in result.text
    # Per-file arrays of unchanged files were reused, not recomputed.
    assert repo_map.graph().per_file["core/engine.py"][1] is graph.per_file["core/engine.py"][1]


def test_empty_repository(git_repo: Path) -> None:
    result = default_registry(git_repo).call("repo_map", {})
    assert result.ok and "no source files" in result.text


class _TouchFile:
    """A mutating tool that does not report what it changed, as a shell command would not."""

    name = "touch_file"
    description = "write a file"
    mutates = True

    class args_model(ToolArgs):
        path: str
        content: str

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, args) -> ToolResult:
        (self.root / args.path).write_text(args.content)
        return ToolResult(text="ok")


def test_private_workspace_lookups_follow_what_tools_changed(repo: Path) -> None:
    registry = default_registry(repo, external_changes=False)
    registry.add(_TouchFile(repo))
    find = lambda name: registry.call("search_code", {"query": name}).data["matches"]
    assert find("Engine")
    # Outside the tools nothing is watched: the promise is that nobody else edits a workspace.
    (repo / "outside.py").write_text("def written_outside():\n    pass\n")
    assert find("written_outside") == []
    # A mutating tool that does not say what it changed makes the next lookup check everything.
    registry.call("touch_file", {"path": "shell.py", "content": "def from_shell():\n    pass\n"})
    assert find("from_shell") and find("written_outside")
    # edit_file reports its path: only that file is re-read.
    registry.call("edit_file", {"path": "shell.py", "old_string": "from_shell", "new_string": "renamed"})
    assert find("renamed") and not find("from_shell")
