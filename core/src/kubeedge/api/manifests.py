"""Reading multi-document YAML manifests while keeping where each value came from.

Every problem found later can then name the file, the document, the line and the field path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
PathPart = str | int


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
            loader = _ManifestLoader(self._text)
            try:
                while loader.check_node():
                    self._nodes.append(loader.get_node())  # None for an empty document
            except yaml.YAMLError:
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


def parse_documents(source: str, text: str) -> tuple[list[Document], list[Problem]]:
    """Every document of a YAML (or JSON) text; a syntax error becomes a problem, not an exception.

    Documents before a syntax error are still returned: one bad document does not hide the others.
    """
    documents: list[Document] = []
    problems: list[Problem] = []
    locator = _Locator(text)
    loader = _FastLoader(text)
    index = 0
    try:
        while loader.check_data():
            data = loader.get_data()
            index += 1
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
    finally:
        loader.dispose()
    return documents, problems


def manifest_files(path: Path) -> Iterator[Path]:
    """The manifest files at ``path``: the file itself, or every YAML/JSON file under a folder."""
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and child.suffix in MANIFEST_SUFFIXES and not child.name.startswith("."):
                yield child
    else:
        yield path


def read_documents(paths: Iterable[Path]) -> tuple[list[Document], list[Problem]]:
    """Every document in the given files and folders, with the problems met reading them."""
    documents: list[Document] = []
    problems: list[Problem] = []
    for top in paths:
        if not top.exists():
            problems.append(Problem(str(top), "no such file or folder"))
            continue
        for file in manifest_files(top):
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(Problem(str(file), f"cannot read: {exc}"))
                continue
            docs, errs = parse_documents(str(file), text)
            documents.extend(docs)
            problems.extend(errs)
    return documents, problems
