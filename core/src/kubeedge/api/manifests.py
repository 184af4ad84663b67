"""Reading multi-document YAML manifests while keeping where each value came from.

Every problem found later can then name the file, the document, the line and the field path.

A manifest is untrusted input: before a document is turned into Python data, its composed YAML
nodes are measured against :class:`ManifestLimits` (file size, nesting depth, nodes with aliases
expanded, nodes added by aliases, integer digits), and recursive aliases and tags that have no
JSON form are refused. A document over a limit becomes a :class:`Problem` naming the limit and
its setting; nothing later (validation, the edge, a mapper) meets data it could choke on.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
PathPart = str | int

QUOTE_LIMIT = 80
"""Characters of a value that an error message quotes; the rest is summarised by its size."""
MAX_MESSAGE = 1000
"""A problem's message and path are cut to this length whatever made them (a last line of defence:
values are quoted with :func:`quote` where messages are made)."""


class ManifestLimits(BaseModel):
    """How much one manifest file may ask of its reader (docs/design.md, "Manifest limits").

    ``kubeedge validate`` uses the defaults; the edge's standalone source takes them from
    ``modules.standalone.limits`` in edge.yaml.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    max_file_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """Largest manifest file read, in bytes."""
    max_depth: int = Field(default=100, gt=0, le=200)
    """Deepest nesting of mappings and lists in a document (aliases expanded). At most 200:
    deeper data would exhaust the recursion of the JSON and copy steps that follow."""
    max_nodes: int = Field(default=1_000_000, gt=0)
    """Most nodes (keys, values, items) in one document, each alias counted as the nodes it
    stands for: bounds the data one document can make."""
    max_alias_nodes: int = Field(default=100_000, ge=0)
    """Most nodes that aliases may add to one document: reusing a block (``*visitor``) is fine,
    an alias bomb (anchors of aliases of anchors) is refused before it is expanded."""
    max_integer_digits: int = Field(default=100, gt=0, le=4300)
    """Longest integer literal, in characters (Python itself refuses to convert beyond 4,300)."""


DEFAULT_LIMITS = ManifestLimits()


class _TooMuch(Exception):
    """A document over a limit, or one that cannot become JSON; ``mark`` says where."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.mark = mark


_quote_repr = reprlib.Repr()
_quote_repr.maxlevel = 3
_quote_repr.maxstring = QUOTE_LIMIT
_quote_repr.maxother = QUOTE_LIMIT
_quote_repr.maxlong = 40


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for an error message, never longer than about ``limit`` characters.

    A long string is quoted up to ``limit`` characters and ends with ``…(N bytes)``; other values
    are abbreviated by :mod:`reprlib`, which never renders more than it shows (a value built from
    aliases may be huge).
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        size = len(value.encode("utf-8", "surrogatepass"))
        return f"{value[:limit]!r}…({size} bytes)"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    text = _quote_repr.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


def text_of(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``str(value)`` for a name in a message (``kind``, ``metadata.name``), bounded as :func:`quote`."""
    return value if isinstance(value, str) and len(value) <= limit else quote(value, limit)


class _ManifestLoader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings, as Kubernetes' YAML-to-JSON step does."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML declares it as an instance attribute
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


# libyaml's loader (about ten times faster) with the same resolvers, when PyYAML was built with it.
_FastLoader: type[Any] = _ManifestLoader
if getattr(yaml, "__with_libyaml__", False):

    class _CManifestLoader(yaml.CSafeLoader):
        yaml_implicit_resolvers = _ManifestLoader.yaml_implicit_resolvers

    _FastLoader = _CManifestLoader


class _Locator:
    """Line numbers of one file's documents, composed only when a problem asks for one."""

    def __init__(self, text: str) -> None:
        self._text: str | None = text
        self._nodes: list[yaml.Node | None] | None = None

    def node(self, index: int) -> yaml.Node | None:
        if self._nodes is None:
            assert self._text is not None
            self._nodes = []
            # libyaml composes without Python recursion (and refuses nesting beyond 1,000);
            # composing is linear even for alias bombs: an alias is the same node object.
            loader = _FastLoader(self._text)
            try:
                while loader.check_node():
                    self._nodes.append(loader.get_node())  # None for an empty document
            except (yaml.YAMLError, RecursionError):
                pass  # the documents before the error are located; the error itself is reported
            finally:
                loader.dispose()
            self._text = None
        return self._nodes[index - 1] if 0 < index <= len(self._nodes) else None


def format_path(parts: Iterable[PathPart]) -> str:
    """``('spec', 'properties', 1, 'name')`` -> ``spec.properties[1].name``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not isinstance(part, str) or len(part) > QUOTE_LIMIT:
            # a key YAML made of something else (a number, null), or a long one: never at length
            out += f"[{quote(part)}]"
        elif part.replace("_", "").replace("-", "").isalnum():
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "<document>"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest, located as precisely as we can."""

    source: str
    message: str
    document: int | None = None
    line: int | None = None
    obj: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        for name in ("message", "path", "obj"):
            text = getattr(self, name)
            if text is not None and len(text) > MAX_MESSAGE:
                object.__setattr__(self, name, f"{text[:MAX_MESSAGE]}…({len(text)} characters)")

    def __str__(self) -> str:
        where = self.source + (f":{self.line}" if self.line else "")
        parts = [where]
        if self.document is not None:
            parts.append(f"document {self.document}")
        if self.obj:
            parts.append(self.obj)
        head = ", ".join(parts)
        return f"{head}: {self.path}: {self.message}" if self.path else f"{head}: {self.message}"


@dataclass
class Document:
    """One YAML document of a manifest file."""

    source: str
    index: int
    """1-based position in its file."""
    data: Any
    locator: _Locator | None = field(default=None, repr=False)

    @property
    def line(self) -> int | None:
        node = self.locator.node(self.index) if self.locator else None
        return node.start_mark.line + 1 if node is not None else None

    def line_of(self, path: Iterable[PathPart]) -> int | None:
        """Line of the deepest node along ``path`` that exists in the document."""
        node = self.locator.node(self.index) if self.locator else None
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in path:
            child = _child(node, part)
            if child is None:
                break
            node = child
            line = node.start_mark.line + 1
        return line


def _child(node: yaml.Node, part: PathPart) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return value  # type: ignore[no-any-return]
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part]  # type: ignore[no-any-return]
    return None


def parse_documents(
    source: str, text: str, limits: ManifestLimits = DEFAULT_LIMITS
) -> tuple[list[Document], list[Problem]]:
    """Every document of a YAML (or JSON) text; a syntax error becomes a problem, not an exception.

    Documents before a syntax error are still returned: one bad document does not hide the others.
    A document over one of ``limits`` becomes a problem and the documents after it are still read.
    """
    documents: list[Document] = []
    problems: list[Problem] = []
    size = len(text.encode("utf-8", "surrogatepass")) if len(text) * 4 > limits.max_file_bytes else 0
    if size > limits.max_file_bytes:
        return [], [_too_big(source, size, limits)]
    locator = _Locator(text)
    loader = _FastLoader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            index += 1
            if node is None:
                continue
            try:
                _measure(node, limits)
            except _TooMuch as exc:
                line = exc.mark.line + 1 if exc.mark is not None else None
                problems.append(Problem(source, str(exc), document=index, line=line))
                continue
            data = loader.construct_document(node)
            if data is None:
                continue
            documents.append(Document(source, index, data, locator))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
        where = f" (line {line}, column {mark.column + 1})" if mark is not None else ""
        problems.append(
            Problem(source, f"not valid YAML: {what or exc}{where}", document=index + 1, line=line)
        )
    except RecursionError:  # PyYAML without libyaml composes recursively
        problems.append(
            Problem(
                source,
                f"nested too deeply to read (the limit is {limits.max_depth} levels, maxDepth)",
                document=index + 1,
            )
        )
    finally:
        loader.dispose()
    return documents, problems


def load_yaml(source: str, text: str, limits: ManifestLimits = DEFAULT_LIMITS) -> Any:
    """The data of a one-document YAML text (a configuration file), read within ``limits``.

    ``None`` for an empty text; ``ValueError`` with the problem (file, line, what) otherwise.
    """
    documents, problems = parse_documents(source, text, limits)
    if problems:
        raise ValueError(str(problems[0]))
    if len(documents) > 1:
        raise ValueError(f"{source}: expected one YAML document, found {len(documents)}")
    return documents[0].data if documents else None


def _too_big(source: str, size: int, limits: ManifestLimits) -> Problem:
    return Problem(
        source,
        f"file is {size} bytes, more than the limit of {limits.max_file_bytes} bytes (maxFileBytes)",
    )


_INT_TAG = "tag:yaml.org,2002:int"
_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    _INT_TAG,
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:merge",  # '<<': the constructor says when it is misplaced
}
_COLLECTION_TAGS = {"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"}


def _measure(root: yaml.Node, limits: ManifestLimits) -> None:
    """Raise :class:`_TooMuch` if a composed document breaks a limit or has no JSON form.

    One pass without recursion over the node graph, in which an alias is the very node its
    anchor names: each collection's size (aliases expanded) and height are computed once and
    reused, so an alias bomb is measured in the time its text takes to read, and a node met
    again while it is still open is a recursive alias.
    """
    measured: dict[int, tuple[int, int]] = {}  # id(collection) -> (nodes, height), aliases expanded
    open_: set[int] = set()
    written = 0  # nodes as written (each alias once), to tell what aliases add
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.ScalarNode):
            written += 1
            _check_scalar(node, limits)
            continue
        children = _children(node)
        if done:
            open_.discard(key)
            nodes = 1 + sum(measured[id(c)][0] if id(c) in measured else 1 for c in children)
            height = 1 + max((measured[id(c)][1] for c in children if id(c) in measured), default=0)
            measured[key] = (nodes, height)
            # Checked as each collection closes, so an alias bomb stops at its first big layer:
            # what this collection stands for, less every node written so far, aliases added.
            if nodes - written > limits.max_alias_nodes:
                raise _TooMuch(
                    f"aliases expand this {_kind(node)} to {nodes} nodes, adding more than "
                    f"{limits.max_alias_nodes} to what is written (maxAliasNodes)",
                    node.start_mark,
                )
            if nodes > limits.max_nodes:
                raise _TooMuch(
                    f"document has more than {limits.max_nodes} nodes with its aliases expanded "
                    f"(maxNodes); this {_kind(node)} alone stands for {nodes}",
                    node.start_mark,
                )
            if len(open_) + height > limits.max_depth:
                raise _TooMuch(
                    f"nested more than {limits.max_depth} levels deep with its aliases expanded (maxDepth)",
                    node.start_mark,
                )
            continue
        if key in measured:
            continue  # an alias of a collection measured already
        written += 1
        if node.tag not in _COLLECTION_TAGS:
            raise _TooMuch(_tag_message(node), node.start_mark)
        if len(open_) >= limits.max_depth:
            raise _TooMuch(f"nested more than {limits.max_depth} levels deep (maxDepth)", node.start_mark)
        open_.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_:
                raise _TooMuch(
                    f"recursive alias: this {_kind(child)} contains an alias of itself "
                    "(it would be infinitely deep)",
                    child.start_mark,
                )
            if id(child) not in measured:
                stack.append((child, False))
    total = measured[id(root)][0] if id(root) in measured else 1
    if total - written > limits.max_alias_nodes:
        raise _TooMuch(
            f"aliases expand this document from {written} to {total} nodes, adding more than "
            f"{limits.max_alias_nodes} (maxAliasNodes)",
            root.start_mark,
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value)


def _kind(node: yaml.Node) -> str:
    return "mapping" if isinstance(node, yaml.MappingNode) else "list"


def _check_scalar(node: yaml.ScalarNode, limits: ManifestLimits) -> None:
    if node.tag not in _SCALAR_TAGS:
        raise _TooMuch(_tag_message(node), node.start_mark)
    if node.tag == _INT_TAG and len(node.value) > limits.max_integer_digits:
        raise _TooMuch(
            f"integer {quote(node.value, 20)} is longer than {limits.max_integer_digits} digits "
            "(maxIntegerDigits)",
            node.start_mark,
        )


def _tag_message(node: yaml.Node) -> str:
    tag = str(node.tag)
    short = "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag
    return (
        f"tag {quote(short, 40)} is not allowed: a Kubernetes object is JSON (strings, numbers, "
        "booleans, null, lists and mappings)"
    )


def manifest_files(path: Path) -> Iterator[Path]:
    """The manifest files at ``path``: the file itself, or every YAML/JSON file under a folder."""
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and child.suffix in MANIFEST_SUFFIXES and not child.name.startswith("."):
                yield child
    else:
        yield path


def read_documents(
    paths: Iterable[Path], limits: ManifestLimits = DEFAULT_LIMITS
) -> tuple[list[Document], list[Problem]]:
    """Every document in the given files and folders, with the problems met reading them."""
    documents: list[Document] = []
    problems: list[Problem] = []
    for top in paths:
        if not top.exists():
            problems.append(Problem(str(top), "no such file or folder"))
            continue
        for file in manifest_files(top):
            try:
                size = file.stat().st_size
                if size > limits.max_file_bytes:
                    problems.append(_too_big(str(file), size, limits))
                    continue
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(Problem(str(file), f"cannot read: {exc}"))
                continue
            docs, errs = parse_documents(str(file), text, limits)
            documents.extend(docs)
            problems.extend(errs)
    return documents, problems
