"""``kubeedge mapper new NAME``: a complete mapper distribution to start from.

The template (``kubeedge/mapper/template``) is a working mapper for a small line-based TCP
protocol, with a simulated device, the conformance suite wired to it, a README and example
manifests: freshly generated, it installs, is listed by ``kubeedge mapper list``, and its tests
pass. Files are rendered with :class:`string.Template` (``${name}``, ``${package}`` ...).
"""

from __future__ import annotations

import keyword
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from kubeedge.errors import KubeEdgeError

NAME_RULE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
MAX_NAME = 32
RESERVED = frozenset({"core", "testing", "template"})


class ScaffoldError(KubeEdgeError):
    pass


def check_name(name: str) -> None:
    """Refuse a name that cannot be a protocol name, an entry point and a Python package."""
    if not NAME_RULE.match(name):
        raise ScaffoldError(
            f"mapper name {name!r} must be lower-case letters and digits, words joined by single "
            "hyphens, starting with a letter (like 'acme' or 'acme-plc'): it becomes the protocol "
            "name in manifests, the entry point name and part of a Python package name"
        )
    if len(name) > MAX_NAME:
        raise ScaffoldError(f"mapper name {name!r} is longer than {MAX_NAME} characters")
    if name in RESERVED or keyword.iskeyword(name):
        raise ScaffoldError(f"mapper name {name!r} is reserved")


def names(name: str, core_version: str) -> dict[str, str]:
    package = "kubeedge_mapper_" + name.replace("-", "_")
    return {
        "name": name,
        "dist": f"kubeedge-mapper-{name}",
        "package": package,
        "cls": "".join(part.capitalize() for part in name.split("-")),
        "title": " ".join(part.capitalize() for part in name.split("-")),
        "core_version": core_version.split("+")[0],
    }


def generate(name: str, parent: Path, core_version: str) -> Path:
    """Write ``parent/kubeedge-mapper-NAME``; refuses to write into a folder that has files."""
    check_name(name)
    values = names(name, core_version)
    target = parent / values["dist"]
    if target.exists() and any(target.iterdir()):
        raise ScaffoldError(f"{target} exists and is not empty; choose another --dest")
    template = resources.files("kubeedge.mapper").joinpath("template")
    for source, relative in _walk(template, ""):
        path = relative.removesuffix(".tmpl")
        path = path.replace("PACKAGE", values["package"]).replace("DEVICE", f"{name}-device")
        out = target / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(Template(source.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
    return target


def _walk(folder: Traversable, prefix: str) -> list[tuple[Traversable, str]]:
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        relative = f"{prefix}{entry.name}"
        if entry.is_dir():
            if entry.name != "__pycache__":
                found += _walk(entry, relative + "/")
        elif entry.name.endswith(".tmpl"):
            found.append((entry, relative))
    return found
