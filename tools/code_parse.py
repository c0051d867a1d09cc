"""Parse one source file with tree-sitter into its definitions and references.

The result is plain data (stored as JSON, sent between processes):
  {"defs": [[name, kind, line, end_line, scope, signature], ...], "refs": {name: [line, ...]}}
Lines are 1-based; `scope` is the dotted chain of enclosing classes/functions ("" at top level)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from dsagent.tools.code_langs import LANGS, QUERY_VERSION, is_class_like, load_language

# Bump when the extraction below changes meaning; with the queries' hash it keys the stored results.
EXTRACT_VERSION = f"3-{QUERY_VERSION}"
MAX_SIGNATURE = 200

_PRIORITY = {"variable": 1, "constant": 1}  # a name captured twice keeps its most specific kind
_SPACES = re.compile(r"\s+")
_GO_KEYWORD = {"type_spec": "type", "type_alias": "type", "const_spec": "const", "var_spec": "var"}
_cache: dict[str, tuple[Any, Any, Any]] = {}


def blob_sha(data: bytes) -> str:
    """Git's blob id of `data` (the same key `git hash-object` gives)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _tools(lang: str):
    if lang not in _cache:
        from tree_sitter import Parser, Query

        language = load_language(lang)
        spec = LANGS[lang]
        _cache[lang] = (Parser(language), Query(language, spec.definitions), Query(language, spec.references))
    return _cache[lang]


def parse_source(lang: str, source: bytes) -> dict[str, Any]:
    from tree_sitter import QueryCursor

    parser, def_query, ref_query = _tools(lang)
    tree = parser.parse(source)
    root = tree.root_node
    spec = LANGS[lang]
    found: dict[int, tuple[str, Any, Any]] = {}  # name start byte -> (kind, def node, name node)
    for _, captures in QueryCursor(def_query).matches(root):
        names = captures.get("name")
        if not names:
            continue
        kind_key = next((key for key in captures if key.startswith("def.")), None)
        if kind_key is None:
            continue
        kind, node, name = kind_key[4:], captures[kind_key][0], names[0]
        previous = found.get(name.start_byte)
        if previous is None or _PRIORITY.get(previous[0], 2) < _PRIORITY.get(kind, 2):
            found[name.start_byte] = (kind, node, name)
    defs = [_definition(spec, source, kind, node, name) for kind, node, name in found.values()]
    defs.sort(key=lambda d: (d[2], d[0]))
    seen: dict[str, set[int]] = {}
    for node in QueryCursor(ref_query).captures(root).get("ref", ()):
        if node.start_byte in found:
            continue
        if node.type == "field_identifier" and node.parent is not None and node.parent.type == "field_declaration":
            continue  # a struct field being declared is not a use of it
        text = source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")
        if text not in spec.stop_words:
            seen.setdefault(text, set()).add(node.start_point[0] + 1)
    refs = {name: sorted(lines) for name, lines in seen.items()}
    return {"defs": defs, "refs": refs}


def _definition(spec, source: bytes, kind: str, node, name) -> list:
    scope, parent_type = _scope(spec, node)
    if kind == "function" and parent_type and is_class_like(parent_type):
        kind = "method"
    if kind == "type" and node.type == "type_spec":
        inner = node.child_by_field_name("type")
        kind = {"struct_type": "struct", "interface_type": "interface"}.get(inner.type if inner else "", "type")
    text = source[name.start_byte : name.end_byte].decode("utf-8", errors="replace")
    start_line, end_line = node.start_point[0] + 1, node.end_point[0] + 1
    return [text, kind, start_line, end_line, scope, _signature(source, node)]


def _scope(spec, node) -> tuple[str, str | None]:
    """Dotted names of the enclosing scopes, and the type of the nearest one."""
    names: list[str] = []
    nearest = None
    parent = node.parent
    while parent is not None:
        if parent.type in spec.scopes or parent.type == "method_declaration":
            label = _scope_name(parent)
            if label:
                names.append(label)
                nearest = nearest or parent.type
        parent = parent.parent
    if node.type == "method_declaration":  # Go: a method's scope is its receiver type
        receiver = _receiver_type(node)
        if receiver:
            names.insert(0, receiver)
            nearest = "type_spec"
    return ".".join(reversed(names)), nearest


def _scope_name(node) -> str | None:
    if node.type == "impl_item":
        target = node.child_by_field_name("type")
        return _base_type(target) if target is not None else None
    if node.type == "method_declaration":
        return None  # handled through the receiver
    name = node.child_by_field_name("name")
    return name.text.decode("utf-8", errors="replace") if name is not None else None


def _receiver_type(node) -> str | None:
    receiver = node.child_by_field_name("receiver")
    if receiver is None:
        return None
    stack = [receiver]
    while stack:
        current = stack.pop(0)
        if current.type == "type_identifier":
            return current.text.decode("utf-8", errors="replace")
        stack.extend(current.children)
    return None


def _base_type(node) -> str:
    """`Foo` from `Foo`, `Foo<T>`, `&mut Foo`, `crate::a::Foo`."""
    text = node.text.decode("utf-8", errors="replace")
    text = text.split("<", 1)[0].lstrip("&").removeprefix("mut ").strip()
    return text.rsplit("::", 1)[-1]


def _signature(source: bytes, node) -> str:
    """The definition's header: everything before its body, on one line."""
    start, keyword = node.start_byte, ""
    if node.type == "variable_declarator" and node.parent is not None and node.parent.child_count:
        keyword = node.parent.children[0].text.decode() + " "  # `const` / `let` / `var`
    body = node.child_by_field_name("body")
    value = node.child_by_field_name("value")
    if body is None and value is not None and value.type != "class":
        body = value.child_by_field_name("body")
    if body is not None and body.start_byte > start:
        header = source[start : body.start_byte]
    else:
        end = source.find(b"\n", start, node.end_byte)
        header = source[start : end if end != -1 else node.end_byte]
    text = keyword + _SPACES.sub(" ", header.decode("utf-8", errors="replace")).strip()
    text = text.replace("( ", "(").replace(" )", ")").rstrip(" {;").rstrip()
    colon = text.rfind(": #")
    if colon != -1 and not text.endswith(":") and node.type in ("function_definition", "class_definition"):
        text = text[: colon + 1]  # a comment between a Python header and its body
    if node.type in _GO_KEYWORD:  # Go specs omit the keyword, which sits on the enclosing declaration
        text = f"{_GO_KEYWORD[node.type]} {text.split('{', 1)[0].rstrip()}"
    if len(text) > MAX_SIGNATURE:
        text = text[: MAX_SIGNATURE - 1] + "…"
    return text
