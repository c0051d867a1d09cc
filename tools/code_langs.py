"""Languages the code index understands: file extensions, grammars and tree-sitter queries.

Definition patterns capture the whole definition as `@def.KIND` and its name as `@name`. Reference
patterns capture identifier-like nodes as `@ref`; names that are themselves definitions are dropped
later, so a reference is any other use of a name (calls, types, attributes, imports)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

_JS_DEFS = """
(function_declaration name: (_) @name) @def.function
(generator_function_declaration name: (_) @name) @def.function
(class_declaration name: (_) @name) @def.class
(method_definition name: (_) @name) @def.method
(variable_declarator name: (identifier) @name
  value: [(arrow_function) (function_expression) (generator_function)]) @def.function
(variable_declarator name: (identifier) @name value: (class)) @def.class
(assignment_expression left: (member_expression property: (property_identifier) @name)
  right: [(arrow_function) (function_expression)]) @def.function
(program (lexical_declaration (variable_declarator name: (identifier) @name) @def.variable))
(program (export_statement (lexical_declaration (variable_declarator name: (identifier) @name) @def.variable)))
"""

# TypeScript and TSX share one grammar family: the same reference captures and scope-making nodes.
_TS_REFS = "[(identifier) (property_identifier) (shorthand_property_identifier) (type_identifier)] @ref"
_TS_SCOPES = frozenset(
    {
        "class_declaration",
        "abstract_class_declaration",
        "interface_declaration",
        "method_definition",
        "function_declaration",
        "internal_module",
    }
)

_TS_DEFS = (
    _JS_DEFS
    + """
(interface_declaration name: (_) @name) @def.interface
(type_alias_declaration name: (_) @name) @def.type
(enum_declaration name: (_) @name) @def.enum
(abstract_class_declaration name: (_) @name) @def.class
(function_signature name: (_) @name) @def.function
(method_signature name: (_) @name) @def.method
(abstract_method_signature name: (_) @name) @def.method
(internal_module name: (identifier) @name) @def.module
"""
)

_PY_DEFS = """
(function_definition name: (identifier) @name) @def.function
(class_definition name: (identifier) @name) @def.class
(module (expression_statement (assignment left: (identifier) @name) @def.variable))
"""

_GO_DEFS = """
(function_declaration name: (identifier) @name) @def.function
(method_declaration name: (field_identifier) @name) @def.method
(type_spec name: (type_identifier) @name) @def.type
(type_alias name: (type_identifier) @name) @def.type
(method_elem name: (field_identifier) @name) @def.method
(source_file (const_declaration (const_spec (identifier) @name) @def.constant))
(source_file (var_declaration (var_spec (identifier) @name) @def.variable))
"""

_RUST_DEFS = """
(function_item name: (identifier) @name) @def.function
(function_signature_item name: (identifier) @name) @def.function
(struct_item name: (type_identifier) @name) @def.struct
(union_item name: (type_identifier) @name) @def.struct
(enum_item name: (type_identifier) @name) @def.enum
(trait_item name: (type_identifier) @name) @def.trait
(type_item name: (type_identifier) @name) @def.type
(mod_item name: (identifier) @name) @def.module
(macro_definition name: (identifier) @name) @def.macro
(const_item name: (identifier) @name) @def.constant
(static_item name: (identifier) @name) @def.constant
"""

_CLASS_LIKE = {
    "class_definition",
    "class_declaration",
    "abstract_class_declaration",
    "class",
    "interface_declaration",
    "impl_item",
    "trait_item",
    "type_spec",
}


@dataclass(frozen=True)
class LangSpec:
    name: str
    extensions: tuple[str, ...]
    definitions: str
    references: str
    scopes: frozenset[str]  # node types whose name qualifies the definitions inside them
    stop_words: frozenset[str] = field(default_factory=frozenset)  # names never worth a reference


LANGS: dict[str, LangSpec] = {
    spec.name: spec
    for spec in (
        LangSpec(
            "python",
            (".py", ".pyi"),
            _PY_DEFS,
            "(identifier) @ref",
            frozenset({"class_definition", "function_definition"}),
            frozenset({"self", "cls"}),
        ),
        LangSpec(
            "javascript",
            (".js", ".jsx", ".mjs", ".cjs"),
            _JS_DEFS,
            "[(identifier) (property_identifier) (shorthand_property_identifier)] @ref",
            frozenset({"class_declaration", "method_definition", "function_declaration"}),
        ),
        LangSpec(
            "typescript",
            (".ts", ".mts", ".cts"),
            _TS_DEFS,
            _TS_REFS,
            _TS_SCOPES,
        ),
        LangSpec(
            "tsx",
            (".tsx",),
            _TS_DEFS,
            _TS_REFS,
            _TS_SCOPES,
        ),
        LangSpec(
            "go",
            (".go",),
            _GO_DEFS,
            "[(identifier) (type_identifier) (field_identifier)] @ref",
            frozenset({"type_spec", "function_declaration", "method_declaration"}),
            frozenset({"_"}),
        ),
        LangSpec(
            "rust",
            (".rs",),
            _RUST_DEFS,
            "[(identifier) (type_identifier) (field_identifier)] @ref",
            frozenset({"impl_item", "trait_item", "mod_item", "function_item"}),
            frozenset({"_"}),
        ),
    )
}

_BY_EXTENSION = {ext: spec.name for spec in LANGS.values() for ext in spec.extensions}

# Changes whenever a query changes, so stored results from older queries are never reused.
QUERY_VERSION = hashlib.sha1(
    "".join(s.definitions + s.references + ",".join(sorted(s.stop_words)) for s in LANGS.values()).encode()
).hexdigest()[:12]


def language_for(path: str) -> str | None:
    """The index language of a path by its extension, or None."""
    dot = path.rfind(".")
    return _BY_EXTENSION.get(path[dot:].lower()) if dot != -1 else None


def is_class_like(node_type: str) -> bool:
    return node_type in _CLASS_LIKE


def load_language(name: str):
    """The tree-sitter Language for an index language (grammar wheels, nothing downloaded)."""
    from tree_sitter import Language

    if name == "python":
        import tree_sitter_python as grammar

        return Language(grammar.language())
    if name == "javascript":
        import tree_sitter_javascript as grammar

        return Language(grammar.language())
    if name in ("typescript", "tsx"):
        import tree_sitter_typescript as grammar

        return Language(grammar.language_typescript() if name == "typescript" else grammar.language_tsx())
    if name == "go":
        import tree_sitter_go as grammar

        return Language(grammar.language())
    if name == "rust":
        import tree_sitter_rust as grammar

        return Language(grammar.language())
    raise ValueError(f"no grammar for {name}")
