"""The files source: validated as kubeedge validate does, followed live, per-object isolation,
versions bumped only when an object's content changes and kept across restarts."""

from __future__ import annotations

from cloud_samples import device, model
from hub_client import wait_for


async def test_versions_change_only_with_content_and_survive_a_restart(cloud) -> None:
    cloud.write("plant.yaml", model(), device("a", "edge-1"), device("b", "edge-1"))
    await cloud.reload()
    before = {r: o.version for r, o in cloud.source.objects.items()}
    assert len(set(before.values())) == 3  # one counter: every object has its own version
    # rewriting the same content (another order, another file) bumps nothing
    (cloud.folder / "plant.yaml").unlink()
    cloud.write("b.yaml", device("b", "edge-1"))
    cloud.write("a.yaml", device("a", "edge-1"), model())
    await cloud.reload()
    assert {r: o.version for r, o in cloud.source.objects.items()} == before
    cloud.write("a.yaml", device("a", "edge-1", setpoint="9"), model())
    await cloud.reload()
    after = {r: o.version for r, o in cloud.source.objects.items()}
    assert int(after["device/default/a"]) > max(int(v) for v in before.values())
    assert {k: v for k, v in after.items() if k != "device/default/a"} == {
        k: v for k, v in before.items() if k != "device/default/a"
    }
    await cloud.stop()
    await cloud.start()
    assert {r: o.version for r, o in cloud.source.objects.items()} == after


async def test_a_bad_object_never_holds_back_the_others(cloud) -> None:
    bad = device("bad", "edge-1")
    bad["spec"]["properties"][0]["collectCycle"] = -1
    cloud.write("plant.yaml", model(), device("good", "edge-1"), bad)
    await cloud.reload()
    assert sorted(cloud.source.objects) == ["device/default/good", "devicemodel/default/sensor-model"]
    notes = cloud.source.last_contents.notes
    assert any("Device default/bad: spec.properties[0].collectCycle" in n for n in notes), notes
    # a good version of it, then a broken edit: the last good version stays
    cloud.write("plant.yaml", model(), device("good", "edge-1"), device("bad", "edge-1"))
    await cloud.reload()
    version = cloud.source.objects["device/default/bad"].version
    cloud.write("plant.yaml", model(), device("good", "edge-1", setpoint="11"), bad)
    await cloud.reload()
    assert cloud.source.objects["device/default/bad"].version == version
    good = cloud.source.objects["device/default/good"].obj
    assert good.spec.properties[1].desired.value == "11"


async def test_a_file_broken_at_start_up_deletes_nothing_an_earlier_run_stored(cloud) -> None:
    cloud.write("plant.yaml", model(), device("a", "edge-1"))
    await cloud.reload()
    await cloud.stop()
    (cloud.folder / "plant.yaml").write_text("kind: [unclosed\n")
    await cloud.start()
    assert sorted(cloud.source.objects) == ["device/default/a", "devicemodel/default/sensor-model"]
    assert not cloud.source.last_contents.complete


async def test_the_folder_is_followed_live(cloud) -> None:
    client = await cloud.connect("edge-1")
    await client.sync()
    assert await client.until_synced() == ([], 0)
    cloud.write("plant.yaml", model(), device("a", "edge-1"))  # no reload: the watcher sees it
    first = await client.next_of("resource")
    second = await client.next_of("resource")
    assert {first.route.resource, second.route.resource} == {
        "device/default/a",
        "devicemodel/default/sensor-model",
    }
    (cloud.folder / "plant.yaml").unlink()  # (an emptied file keeps its objects: it may be mid-write)
    gone = [await client.next_of("resource"), await client.next_of("resource")]
    assert {m.route.operation for m in gone} == {"delete"}
    await wait_for(lambda: not cloud.source.objects, "the source to drop the objects")
