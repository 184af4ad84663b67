"""The edge's facts for ``hub/node``: Go's naming, and what is left out when it cannot be read."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from kubeedge.api.channel import NodeInfoContent
from kubeedge.edge import nodeinfo
from kubeedge.edge.nodeinfo import gather_node_info, goarch


@pytest.mark.parametrize(
    ("machine", "expected"),
    [("x86_64", "amd64"), ("aarch64", "arm64"), ("armv7l", "arm"), ("i686", "386"), ("ppc64le", "ppc64le")],
)
def test_uname_machines_are_named_as_go_names_them(machine: str, expected: str) -> None:
    assert goarch(machine) == expected


def test_facts_that_cannot_be_read_are_left_out_and_the_rest_still_goes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_os_release() -> dict[str, str]:
        raise OSError("no os-release")

    monkeypatch.setattr(platform, "freedesktop_os_release", no_os_release)
    monkeypatch.setattr(nodeinfo, "MACHINE_ID_FILES", (tmp_path / "machine-id",))
    (tmp_path / "boot_id").write_text("\n")  # empty: as good as absent
    monkeypatch.setattr(nodeinfo, "BOOT_ID_FILE", tmp_path / "boot_id")
    monkeypatch.setattr(platform, "machine", lambda: "weird machine")  # not a label value
    info = gather_node_info(["virtual", "Not A Protocol", "modbus", "virtual"])
    assert (info.os_image, info.machine_id, info.boot_id, info.architecture) == (None, None, None, None)
    assert info.operating_system == "linux"
    assert info.mappers == ["modbus", "virtual"]
    assert info.capacity is not None and info.capacity.pods == "0"
    # what the edge makes, the cloud takes (the same bounds, checked again on the way in)
    assert NodeInfoContent.model_validate(info.model_dump(mode="json", exclude_none=True)) == info
