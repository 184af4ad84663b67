"""One bad manifest never starves good devices (issue #19, findings 6-9).

Through the in-process edge (its real folder watch, registry, bus and virtual mapper): a hostile
file at start-up or added at run time, a bad object beside good ones, and a device whose data
cannot be sent to its mapper.
"""

import asyncio
import logging

import orjson
import yaml

from kubeedge.api import topics
from kubeedge.api.assignment import MapperHello
from kubeedge.api.device import Device, DeviceModel
from kubeedge.bus import BusClient
from kubeedge.testing import wait_for
from sample_devices import device, model

HOSTILE = {
    # finding 6: a 5,000-digit integer (ValueError in int(), then in every later reload)
    "bigint.yaml": yaml.safe_dump(device("bigint")).replace(
        "collectCycle: 100", "collectCycle: " + "9" * 5000, 1
    ),
    # finding 7: flow nesting 500 deep (RecursionError in the line locator)
    "deep.yaml": "apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {name: "
    + "[" * 500
    + "]" * 500
    + "}\n",
    # finding 8: 8 anchors x 10 aliases (ran past 120 s and 9.2 GB)
    "bomb.yaml": "\n".join(
        [f"a0: &a0 [{', '.join(['x'] * 10)}]"]
        + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    )
    + "\n",
    # finding 9: recursive configData (broke the mapper's snapshot for every device of the protocol)
    "recursive.yaml": yaml.safe_dump(device("recursive", config={"x": "REC"})).replace(
        "x: REC", "x: &rec [*rec]"
    ),
}


def problems_of(handle) -> str:
    return "\n".join(handle.core.context.registry.source_problems)


async def test_hostile_files_at_start_up_leave_good_devices_served(edge, tmp_path) -> None:
    manifests = tmp_path / "edge" / "manifests"
    manifests.mkdir(parents=True)
    (manifests / "good.yaml").write_text(yaml.safe_dump_all([model(), device("one")]))
    for name, text in HOSTILE.items():
        (manifests / name).write_text(text)
    handle = await edge(workdir=tmp_path / "edge")
    await handle.wait_reported("default/one", "label", "hello")
    text = problems_of(handle)
    for words in ("maxIntegerDigits", "maxDepth", "maxAliasNodes", "recursive alias"):
        assert words in text, text
    assert set(handle.twin.devices) == {"default/one"}


async def test_a_hostile_file_added_at_run_time_never_stops_later_reloads(edge) -> None:
    handle = await edge()
    handle.write_manifest("good.yaml", model(), device("one"))
    await handle.wait_reported("default/one", "label", "hello")
    standalone = handle.core.module("standalone")
    for name, text in HOSTILE.items():
        reloads = standalone.reloads
        (handle.manifests / name).write_text(text)
        await wait_for(lambda r=reloads: standalone.reloads > r, what=f"reload after {name}")
    # a new valid file is still picked up, and the first device was never disturbed
    handle.write_manifest("later.yaml", device("two"))
    await handle.wait_reported("default/two", "label", "hello")
    one = handle.core.module("mappers").runtimes["virtual"].workers["default/one"]
    assert one.connects == 1
    assert "recursive alias" in problems_of(handle)


async def test_a_bad_object_never_holds_back_the_good_objects_beside_it(edge) -> None:
    handle = await edge()
    broken = device("broken", properties=[{"name": "label", "collectCycle": -5}])
    # a file that was never good: its good device is served, its bad one is named
    path = handle.write_manifest("a.yaml", model(), broken, device("good"))
    await handle.wait_reported("default/good", "label", "hello")
    assert "default/broken" not in handle.twin.devices
    assert "Device default/broken" in problems_of(handle) and "(not loaded)" in problems_of(handle)

    # an edit that breaks one device and changes another: the change is applied, the broken
    # device keeps its last good version
    handle.write_manifest("a.yaml", model(), device("broken"), device("good"))
    await handle.wait_reported("default/broken", "label", "hello")
    changed = device(
        "good",
        properties=[
            {
                "name": "label",
                "collectCycle": 100,
                "visitors": {"protocolName": "virtual", "configData": {"value": "changed"}},
            }
        ],
    )
    worker = handle.core.module("mappers").runtimes["virtual"].workers["default/broken"]
    handle.write_manifest("a.yaml", model(), broken, changed)
    await handle.wait_reported("default/good", "label", "changed")
    assert handle.core.module("mappers").runtimes["virtual"].workers["default/broken"] is worker
    assert "default/broken" in handle.core.context.registry.problems
    assert path.exists()


async def test_a_device_that_cannot_be_encoded_is_left_out_of_the_snapshot_and_named(edge, caplog) -> None:
    # Manifests cannot carry such data any more; a source in Python can. Before, the edge's
    # hello handler raised and no device of the protocol got a snapshot.
    caplog.set_level(logging.ERROR, logger="kubeedge.edge.assignments")
    handle = await edge(mappers={})
    registry = handle.core.context.registry
    good_model = DeviceModel.model_validate(model())
    good = Device.model_validate(device("good"))
    bad = Device.model_validate(device("bad", config={"x": 1}))
    config = bad.spec.protocol.config_data
    config["self"] = config  # circular
    registry.replace([bad, good], [good_model])

    node = handle.config.node
    snapshots: list[dict] = []
    got = asyncio.Event()

    def on_assignment(topic: str, payload: bytes) -> None:
        message = orjson.loads(payload)
        if message["kind"] == "snapshot":
            snapshots.append(message)
            got.set()

    bus = BusClient(handle.core.context.bus_url)
    await bus.start()
    try:
        bus.subscribe(topics.mapper_topic(node, "virtual", topics.MAPPER_ASSIGNMENTS), on_assignment, qos=1)
        # one connection: the broker takes the subscription before the hello that follows it
        hello = MapperHello(instance="test", name="virtual")
        bus.publish(topics.mapper_topic(node, "virtual", topics.MAPPER_HELLO), hello.to_json(), qos=1)
        await asyncio.wait_for(got.wait(), 10)
    finally:
        await bus.stop()
    (snapshot,) = snapshots
    keys = [
        f"{d['device']['metadata']['namespace']}/{d['device']['metadata']['name']}"
        for d in snapshot["devices"]
    ]
    assert keys == ["default/good"]
    named = [r.getMessage() for r in caplog.records if "default/bad" in r.getMessage()]
    assert named and "left out" in named[0], [r.getMessage() for r in caplog.records]


async def test_an_integer_beyond_64_bits_in_config_data_is_served_and_blocks_nobody(edge, tmp_path) -> None:
    # Found by hack/fuzz_manifests.py: within the digit limit, but the mapper's restart
    # fingerprint (orjson) refused it, and the snapshot stopped at that device: every device of
    # the protocol after it went unserved.
    manifests = tmp_path / "edge" / "manifests"
    manifests.mkdir(parents=True)
    big = device("big", config={"seed": 123456789012345678901234567890})
    (manifests / "a.yaml").write_text(yaml.safe_dump_all([model(), big, device("after")]))
    handle = await edge(workdir=tmp_path / "edge")  # both arrive in the mapper's first snapshot
    await handle.wait_reported("default/after", "label", "hello")
    await handle.wait_reported("default/big", "label", "hello")
    # and as an upsert, at run time
    handle.write_manifest("b.yaml", device("big-2", config={"seed": -(10**40)}))
    await handle.wait_reported("default/big-2", "label", "hello")


async def test_the_edge_reads_its_folder_within_the_limits_it_is_given(edge) -> None:
    modules = {"standalone": {"debounceMs": 50, "rescanMs": 100, "limits": {"maxIntegerDigits": 3}}}
    handle = await edge(modules=modules)
    slow = device("slow", properties=[{"name": "label", "collectCycle": 10000}])
    handle.write_manifest("a.yaml", model(), device("one"))
    handle.write_manifest("b.yaml", slow)  # a limit makes the whole file unreadable
    await handle.wait_reported("default/one", "label", "hello")
    await wait_for(lambda: "maxIntegerDigits" in problems_of(handle), what="the limit named")
    assert "default/slow" not in handle.twin.devices


async def test_a_model_with_an_integer_beyond_64_bits_blocks_no_device_of_the_snapshot(
    edge, tmp_path
) -> None:
    # Found by hack/fuzz_manifests.py: the mapper keyed its model cache with orjson, which refused
    # the integer, and the whole snapshot part failed: no device of the protocol was served.
    manifests = tmp_path / "edge" / "manifests"
    manifests.mkdir(parents=True)
    big_model = model("big-model")
    big_model["spec"]["properties"][2]["visitors"]["configData"]["value"] = 123456789012345678901234567890
    docs = [big_model, model(), device("big", model_name="big-model"), device("after")]
    (manifests / "a.yaml").write_text(yaml.safe_dump_all(docs))
    handle = await edge(workdir=tmp_path / "edge")
    await handle.wait_reported("default/after", "label", "hello")
    await handle.wait_reported("default/big", "label", "123456789012345678901234567890")
