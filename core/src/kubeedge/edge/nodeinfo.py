"""The edge's own facts for its cloud (``hub/node``): what a kubelet puts in its Node's status.

Gathered once when the edge hub starts (a few small file reads and ``uname``; the hub runs it in
its database thread, off the event loop), sent after each ``hub/synced`` of a cloud that takes it
(docs/wire.md, "Cloud-edge channel"). Whatever cannot be read is left out, never guessed.
"""

from __future__ import annotations

import logging
import os
import platform
import re
from collections.abc import Iterable
from pathlib import Path

from kubeedge import __version__
from kubeedge.api.channel import LABEL_VALUE, MAPPER_NAME, NodeInfoContent, NodeResources

log = logging.getLogger(__name__)

GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv6l": "arm",
    "armv7l": "arm",
    "armv8l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64": "mips64",
    "mips64el": "mips64le",
}
"""``uname -m`` -> Go's GOARCH, the naming of ``kubernetes.io/arch`` and ``nodeInfo.architecture``."""

MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
PODS = "0"
"""These edges run no pods: a capacity of zero pods keeps the scheduler from placing one there."""


def goarch(machine: str) -> str:
    """``uname -m`` in Go's naming (an unknown machine is kept, lower-cased)."""
    machine = machine.strip().lower()
    return GOARCH.get(machine, machine)


def gather_node_info(mappers: Iterable[str] = ()) -> NodeInfoContent:
    """This machine's facts: architecture, OS, kernel, OS image, machine and boot ids, the edge's
    version, CPUs and physical memory (capacity = allocatable: nothing is reserved), no pods, and
    the protocols of ``mappers``. Blocking (file reads): call it off the event loop."""
    resources = NodeResources(cpu=_cpus(), memory=_memory(), pods=PODS)
    info = NodeInfoContent(
        architecture=_label_value(goarch(platform.machine())),
        operating_system=_label_value(platform.system().lower()),
        kernel_version=platform.release()[:256] or None,
        os_image=_os_image(),
        machine_id=_first_line(*MACHINE_ID_FILES),
        boot_id=_first_line(BOOT_ID_FILE),
        version=f"kubeedge-py/{__version__}"[:128],
        capacity=resources,
        allocatable=resources,
        mappers=sorted({m for m in mappers if len(m) <= 63 and re.match(MAPPER_NAME, m)})[:64],
    )
    log.debug("edgehub: node info %s", info.model_dump(exclude_none=True))
    return info


def _label_value(value: str) -> str | None:
    return value if value and len(value) <= 63 and re.match(LABEL_VALUE, value) else None


def _cpus() -> str | None:
    count = os.cpu_count()
    return str(count) if count else None


def _memory() -> str | None:
    """Physical memory in Ki, as a kubelet reports it (``MemTotal``)."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on this platform
        return None
    return f"{pages * size // 1024}Ki" if pages > 0 and size > 0 else None


def _os_image() -> str | None:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return None
    name = release.get("PRETTY_NAME") or release.get("NAME") or ""
    return name[:256] or None


def _first_line(*paths: Path) -> str | None:
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            continue
        if text:
            return text.splitlines()[0][:128]
    return None
