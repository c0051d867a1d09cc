"""The scripted demo of `dsagent fix` (what `scripts/demo` runs), and the example projects it uses.

The model's moves come from `examples/<name>/session.jsonl`; everything else is real: the example is
copied into a fresh git repository, the failing test runs in the Docker sandbox, the edits go through
the real tools into an isolated worktree, the fix is verified and the patch comes from git.

    python -m dsagent.agent.fix_demo [pagination|shipping|textstats] [--headless]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
DEFAULT = "pagination"
INTRO = """\
This is a SCRIPTED run of `dsagent fix`: the model's moves are pre-written in {script}
(no model is loaded). Everything else is real: the example is a fresh git repository, the failing
test runs in the Docker sandbox, edits go through the real tools into an isolated worktree, and the
fix is verified and handed back as a git patch. Real use: dsagent fix TARGET --model local:PATH
"""
_IDENTITY = ["-c", "user.name=dsagent demo", "-c", "user.email=demo@localhost"]


@dataclass(frozen=True)
class Example:
    name: str
    target: str
    cause: str
    path: Path

    @property
    def script(self) -> Path:
        return self.path / "session.jsonl"


def load_examples(folder: Path = EXAMPLES_DIR) -> dict[str, Example]:
    index = folder / "examples.toml"
    if not index.is_file():
        raise FileNotFoundError(f"{index} is missing; the examples ship with a clone of the dsagent repository")
    table = tomllib.loads(index.read_text(encoding="utf-8"))
    return {name: Example(name, entry["target"], entry["cause"], folder / name) for name, entry in table.items()}


def prepare_example(example: Example, dest: Path) -> Path:
    """Copy the project (without its script) to `dest` and make it a git repository with one commit."""
    shutil.copytree(
        example.path, dest, ignore=shutil.ignore_patterns("session.jsonl", "__pycache__", ".pytest_cache", "*.pyc")
    )
    git = lambda *args: subprocess.run(["git", *_IDENTITY, *args], cwd=dest, check=True, capture_output=True)
    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", f"{example.name}: an example project with a failing test")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description="A scripted `dsagent fix` run on an example.")
    parser.add_argument("example", nargs="?", default=DEFAULT)
    parser.add_argument("--headless", action="store_true", help="JSONL events on stdout, as in CI")
    parser.add_argument("--keep", action="store_true", help="keep the example repository afterwards")
    args = parser.parse_args(argv)
    examples = load_examples()
    if args.example not in examples:
        print(f"error: no example {args.example!r}; choose one of {', '.join(examples)}", file=sys.stderr)
        return 2
    example = examples[args.example]
    work = Path(tempfile.mkdtemp(prefix=f"dsagent-demo-{example.name}-"))
    repo = prepare_example(example, work / example.name)
    print(INTRO.format(script=example.script), file=sys.stderr)
    kept = "" if args.keep else " (removed afterwards; --keep keeps it)"
    print(f"example: {example.name} ({example.cause})\nrepository: {repo}{kept}\n", file=sys.stderr)
    try:
        code = _fix(example, repo, args.headless)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return code


def _fix(example: Example, repo: Path, headless: bool) -> int:
    import click
    from dsagent.agent.fix_cli import run_fix
    from dsagent.cli import settings_from_cli

    try:
        settings = settings_from_cli(repo, f"scripted:{example.script}").settings
    except click.exceptions.Exit as exc:  # a configuration error, already printed in one line
        return exc.exit_code
    return run_fix(settings, example.target, repo, headless=headless)


if __name__ == "__main__":
    sys.exit(main())
