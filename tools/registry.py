"""The default set of tools for one workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsagent.tools.base import Registry, ToolResult
from dsagent.tools.context import ToolContext
from dsagent.tools.edit import EditFile
from dsagent.tools.files import ListDir, ReadFile, WriteFile
from dsagent.tools.finish import Finish
from dsagent.tools.search import RepoMapTool, SearchCode
from dsagent.tools.shell import RunShell
from dsagent.tools.tests import RunTests


class WorkspaceRegistry(Registry):
    """A registry whose tools share one ToolContext (root, path jail, code index)."""

    def __init__(self, context: ToolContext, tools=()) -> None:
        super().__init__(tools)
        self.context = context

    def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        # The context learns which calls may have changed files, so lookups stay cheap otherwise.
        self.context.before_call()
        result = super().call(name, arguments)
        self.context.after_call(mutating=name in self and self[name].mutates)
        return result


def default_registry(
    workspace_root: Path | str,
    *,
    index_dir: Path | str | None = None,
    context: ToolContext | None = None,
    sandbox: Any = None,
    external_changes: bool = True,
) -> WorkspaceRegistry:
    """read_file, list_dir, search_code, repo_map, edit_file, write_file and finish, bound to one root.

    `index_dir` is where the code index is stored (default `<root>/.dsagent/index`); pass the user's
    repository's index directory when the root is a temporary workspace so the cache outlives it.
    Command tools (run_shell, run_tests) come with a `sandbox` (a DockerSandbox, or a LazySandbox that
    starts its container on the first command), or are added later with `registry.add`.
    `external_changes=False` promises that only this registry's tools change the files (an isolated
    workspace): lookups then skip re-checking every file's stat. The shared ToolContext is
    `registry.context`."""
    ctx = context or ToolContext(workspace_root, index_dir, external_changes=external_changes)
    commands = [RunShell(sandbox), RunTests(sandbox)] if sandbox is not None else []
    return WorkspaceRegistry(
        ctx,
        [
            ReadFile(ctx),
            ListDir(ctx),
            SearchCode(ctx),
            RepoMapTool(ctx),
            EditFile(ctx),
            WriteFile(ctx),
            Finish(),
            *commands,
        ],
    )


def workspace_registry(workspace, sandbox: Any = None) -> WorkspaceRegistry:
    """The default tools for a `sandbox.workspace.Workspace`: its worktree as the root, the code index
    kept in the user's repository (so it outlives the workspace), and no external edits to watch for."""
    return default_registry(workspace.root, index_dir=workspace.index_dir, sandbox=sandbox, external_changes=False)
