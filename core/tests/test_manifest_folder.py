"""A manifest folder keeps serving a file's devices while the file is being rewritten.

Editors and ``cp`` truncate a file before writing it again; a read that falls in between sees
an empty file. Taken at its word, that removed every device of the file (and their twins) for
a moment, and a device's reported state with it.
"""

from pathlib import Path

import yaml

from kubeedge.manifest_folder import ManifestFolder

MODEL = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "DeviceModel",
    "metadata": {"name": "m", "namespace": "default"},
    "spec": {"protocol": "virtual", "properties": [{"name": "t", "type": "FLOAT"}]},
}


def device(name: str) -> dict:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": "m"},
            "protocol": {"protocolName": "virtual"},
            "properties": [{"name": "t"}],
        },
    }


def keys(folder: ManifestFolder) -> set[str]:
    return {d.key for d in folder.read().devices}


def test_a_file_empty_for_a_moment_keeps_its_devices(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump_all([MODEL, device("a"), device("b")]))
    folder = ManifestFolder(tmp_path)
    assert keys(folder) == {"default/a", "default/b"}

    path.write_text("")  # truncated, not yet written again
    contents = folder.read()
    assert {d.key for d in contents.devices} == {"default/a", "default/b"}
    assert "its file is empty" in contents.kept["default/a"]
    assert any("empty" in note for note in contents.notes)

    path.write_text(yaml.safe_dump_all([MODEL, device("a")]))  # the new content
    assert keys(folder) == {"default/a"}


def test_whitespace_counts_as_empty_but_comments_and_deletion_remove(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump_all([MODEL, device("a")]))
    folder = ManifestFolder(tmp_path)
    assert keys(folder) == {"default/a"}

    path.write_text("\n  \n")
    assert keys(folder) == {"default/a"}

    path.write_text("# everything commented out on purpose\n")
    assert keys(folder) == set()

    path.write_text(yaml.safe_dump_all([MODEL, device("a")]))
    assert keys(folder) == {"default/a"}
    path.unlink()
    assert keys(folder) == set()


def test_a_file_that_was_always_empty_serves_nothing(tmp_path: Path) -> None:
    (tmp_path / "new.yaml").write_text("")
    (tmp_path / "plant.yaml").write_text(yaml.safe_dump_all([MODEL, device("a")]))
    folder = ManifestFolder(tmp_path)
    contents = folder.read()
    assert {d.key for d in contents.devices} == {"default/a"}
    assert contents.kept == {}
