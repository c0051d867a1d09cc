"""edit_file semantics: exact unique matches, replace_all, near misses, line endings, encodings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dsagent.tools.registry import default_registry

SOURCE = """def greet(name):
    message = "hello " + name
    return message


def shout(name):
    message = "HELLO " + name
    return message
"""


@pytest.fixture
def repo(git_repo: Path) -> Path:
    (git_repo / "greet.py").write_text(SOURCE)
    return git_repo


def edit(repo: Path, **args):
    return default_registry(repo).call("edit_file", {"path": "greet.py", **args})


def test_unique_match_is_replaced_and_the_diff_returned(repo: Path) -> None:
    result = edit(repo, old_string='    message = "hello " + name', new_string='    message = f"hello {name}"')
    assert result.ok, result.text
    assert 'message = f"hello {name}"' in (repo / "greet.py").read_text()
    assert "replaced 1 occurrence at line 2" in result.text
    diff = result.data["diff"]
    assert diff.startswith("--- a/greet.py\n+++ b/greet.py\n@@ -1,")
    assert '-    message = "hello " + name\n+    message = f"hello {name}"\n' in diff
    assert diff.rstrip("\n") in result.text


def test_multiple_matches_are_refused_with_their_lines(repo: Path) -> None:
    result = edit(repo, old_string="    return message", new_string="    return message.strip()")
    assert not result.ok
    assert "occurs 2 times" in result.text and "lines 3, 8" in result.text and "replace_all" in result.text
    assert (repo / "greet.py").read_text() == SOURCE


def test_replace_all_changes_every_occurrence(repo: Path) -> None:
    result = edit(repo, old_string="message", new_string="text", replace_all=True)
    assert result.ok, result.text
    assert result.data["replacements"] == 4
    assert "message" not in (repo / "greet.py").read_text()


def test_whitespace_only_mismatch_is_named_and_the_exact_text_shown(repo: Path) -> None:
    result = edit(repo, old_string='\tmessage = "hello " + name\n\treturn message', new_string="\treturn 1")
    assert not result.ok
    assert "only whitespace differs" in result.text
    assert "tabs vs spaces" in result.text
    assert "lines 2-3" in result.text
    assert '     2\t    message = "hello " + name' in result.text
    assert (repo / "greet.py").read_text() == SOURCE


def test_a_near_miss_shows_the_closest_region_and_a_diff(repo: Path) -> None:
    result = edit(repo, old_string='def shout(name):\n    message = "HELO " + name', new_string="x")
    assert not result.ok
    assert "closest regions" in result.text
    assert "lines 6-7" in result.text
    assert '+    message = "HELLO " + name' in result.text
    assert '-    message = "HELO " + name' in result.text


def test_a_mistyped_fragment_of_a_line_finds_its_line(repo: Path) -> None:
    result = edit(repo, old_string='mesage = "HELLO "', new_string="x")
    assert not result.ok
    assert "line 7 (" in result.text.split("\n\n")[1]  # the best candidate comes first


def test_line_number_prefixes_from_read_file_are_detected(repo: Path) -> None:
    result = edit(repo, old_string="     6\tdef shout(name):\n     7\t    message", new_string="x")
    assert not result.ok
    assert "line-number prefixes" in result.text and "line 6" in result.text


def test_nothing_similar_says_so(repo: Path) -> None:
    result = edit(repo, old_string="class Completely(Different):\n    pass", new_string="x")
    assert not result.ok
    assert "no region is similar" in result.text


def test_crlf_file_keeps_its_line_endings(repo: Path) -> None:
    (repo / "greet.py").write_bytes(SOURCE.replace("\n", "\r\n").encode())
    result = edit(repo, old_string='    message = "hello " + name\n    return message', new_string="    return name")
    assert result.ok, result.text
    data = (repo / "greet.py").read_bytes()
    assert b"def greet(name):\r\n    return name\r\n\r\n" in data
    assert data.count(b"\n") == data.count(b"\r\n")
    assert "\r" not in result.data["diff"]


def test_file_without_final_newline_stays_without_it(repo: Path) -> None:
    (repo / "greet.py").write_text("a = 1\nb = 2")
    result = edit(repo, old_string="b = 2", new_string="b = 3")
    assert result.ok, result.text
    assert (repo / "greet.py").read_text() == "a = 1\nb = 3"
    assert "\\ No newline at end of file" in result.data["diff"]


def test_non_utf8_file_is_left_untouched_with_a_clear_error(repo: Path) -> None:
    latin1 = "caf\xe9 = 1\n".encode("latin-1")
    (repo / "greet.py").write_bytes(latin1)
    result = edit(repo, old_string="caf", new_string="tea")
    assert not result.ok
    assert "not valid UTF-8" in result.text and "left untouched" in result.text and "0xe9" in result.text
    assert (repo / "greet.py").read_bytes() == latin1


def test_binary_file_is_left_untouched(repo: Path) -> None:
    blob = b"\x00\x01\x02abc"
    (repo / "greet.py").write_bytes(blob)
    result = edit(repo, old_string="abc", new_string="x")
    assert not result.ok and "binary" in result.text
    assert (repo / "greet.py").read_bytes() == blob


def test_identical_strings_and_missing_files_are_refused(repo: Path) -> None:
    assert "identical" in edit(repo, old_string="greet", new_string="greet").text
    missing = default_registry(repo).call("edit_file", {"path": "nope.py", "old_string": "a", "new_string": "b"})
    assert not missing.ok and "write_file" in missing.text
    nonempty = edit(repo, old_string="", new_string="x")
    assert not nonempty.ok and "old_string is empty" in nonempty.text


def test_empty_old_string_creates_a_new_file(repo: Path) -> None:
    result = default_registry(repo).call("edit_file", {"path": "pkg/new.py", "old_string": "", "new_string": "x = 1\n"})
    assert result.ok, result.text
    assert (repo / "pkg" / "new.py").read_text() == "x = 1\n"
    assert result.data["diff"].startswith("--- /dev/null\n+++ b/pkg/new.py\n")


def test_edit_keeps_the_executable_bit_and_bom(repo: Path) -> None:
    script = repo / "run.sh"
    script.write_bytes("\ufeff#!/bin/sh\necho hi\n".encode())
    os.chmod(script, 0o755)
    result = default_registry(repo).call("edit_file", {"path": "run.sh", "old_string": "hi", "new_string": "yo"})
    assert result.ok, result.text
    assert script.read_bytes() == "\ufeff#!/bin/sh\necho yo\n".encode()
    assert os.stat(script).st_mode & 0o777 == 0o755
