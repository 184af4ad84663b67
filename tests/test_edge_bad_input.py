"""Bad input on the bus gets its own error on the matching result topic, and nothing else breaks."""

import asyncio
import json

import pytest

from kubeedge.api import topics
from kubeedge.bus import BusClient
from kubeedge.testing import wait_for
from sample_devices import device, model

# A twin update exactly as KubeEdge's Go mapper-framework sends it (kubeedge-reference.md section 2.2).
GO_MAPPER_UPDATE = (
    '{"event_id":"","timestamp":1754450000000,"twin":{"temperature":{"expected":{"value":"30","metadata":{}},'
    '"actual":{"value":"25.5","metadata":{}},"metadata":{"type":"float"}}}}'
)


@pytest.fixture
async def wired(edge, broker_url):
    handle = await edge(bus_url=broker_url, mappers={})
    handle.write_manifest("sensor.yaml", model(), device())
    await wait_for(lambda: "default/sensor-1" in handle.twin.devices, what="device known")
    results: list[tuple[str, dict]] = []
    client = BusClient(handle.core.context.bus_url)
    await client.start()
    client.subscribe("$hw/events/device/+/+/twin/+/result", lambda t, p: results.append((t, json.loads(p))))
    client.subscribe(
        "$hw/events/device/+/+/state/update/result", lambda t, p: results.append((t, json.loads(p)))
    )
    client.subscribe("$ke/edge/+/errors", lambda t, p: results.append((t, json.loads(p))))
    await asyncio.sleep(0.1)
    yield handle, client, results
    await client.stop()


def update_topic(name: str = "sensor-1", ns: str = "default", action: str = topics.TWIN_UPDATE) -> str:
    return topics.device_topic(ns, name, action)


async def answer(results: list, count: int = 1) -> list:
    await wait_for(lambda: len(results) >= count, timeout=5, what="an answer")
    return results


@pytest.mark.parametrize(
    ("topic", "payload", "code", "words"),
    [
        (update_topic(), b"{not json", 400, "not valid JSON"),
        (update_topic(), b'{"event_id":"e1"}', 400, "key twin does not exist"),
        (
            update_topic("ghost"),
            b'{"twin":{"temperature":{"actual":{"value":"1"}}}}',
            404,
            "device default/ghost does not exist",
        ),
        (
            update_topic(),
            b'{"twin":{"temperature":{"actual":{"value":"warm"}}}}',
            400,
            "temperature: reported value 'warm' is not a number",
        ),
        (update_topic(), b'{"twin":{"setpoint":{"expected":{"value":"99"}}}}', 400, "above the maximum 30"),
        (update_topic(), b'{"twin":{"temperature":{"expected":{"value":"22"}}}}', 400, "ReadOnly"),
        (update_topic(), b'{"twin":{"bad name!":{"actual":{"value":"1"}}}}', 400, "twin name"),
        (
            update_topic(),
            b'{"twin":{"nosuch":{"expected":{"value":"1"}}}}',
            400,
            "nosuch: no such property on device default/sensor-1 (it has: label, setpoint, temperature)",
        ),
        (
            update_topic(),
            b'{"twin":{"temperature":{"actual":{"value":{"nested":1}}}}}',
            400,
            "twin.temperature.actual.value",
        ),
        (update_topic(), b'{"twin":{"temperature":null}}', 400, "cannot be deleted"),
        (update_topic(), b'{"twin":{"x":{"actual":{"value":"' + b"a" * 2_000_000 + b'"}}}}', 413, "exceeds"),
        (
            update_topic(action=topics.STATE_UPDATE),
            b'{"state":"disconnected"}',
            400,
            "state 'disconnected' is not one of",
        ),
        ("$hw/events/device//sensor-1/twin/update", b"{}", 400, "is not $hw/events/device/{namespace}"),
        (update_topic(action="twin/bogus"), b"{}", 400, "unknown action 'twin/bogus'"),
    ],
    ids=[
        "malformed-json",
        "no-twin-key",
        "unknown-device",
        "wrong-type",
        "out-of-range",
        "read-only",
        "bad-name",
        "desired-for-unknown-property",
        "json-value",
        "delete-spec-twin",
        "huge-payload",
        "bad-state",
        "invalid-topic",
        "unknown-action",
    ],
)
async def test_bad_message_gets_its_error_and_nothing_else_breaks(wired, topic, payload, code, words) -> None:
    handle, client, results = wired
    client.publish(topic, payload, qos=1)
    (where, body), *_ = await answer(results)
    assert body["code"] == code
    assert words in body["reason"], body["reason"]
    if topic.startswith("$hw/events/device/default/"):
        assert where == topic + "/result"
    else:
        assert where == "$ke/edge/edge-1/errors"
    # the module is still fine: a good update right after is applied
    client.publish(
        update_topic(), b'{"event_id":"ok","twin":{"temperature":{"actual":{"value":"25"}}}}', qos=1
    )
    await handle.wait_reported("default/sensor-1", "temperature", "25")
    good = await answer(results, 2)
    assert "code" not in good[-1][1]
    assert good[-1][1]["event_id"] == "ok"


async def test_a_kubeedge_go_mapper_update_is_accepted_unchanged(wired) -> None:
    handle, client, results = wired
    # The reference's sample is for a thermostat: a writable temperature with desired 30, reported 25.5.
    writable = {
        "name": "temperature",
        "type": "FLOAT",
        "accessMode": "ReadWrite",
        "visitors": {"protocolName": "virtual", "configData": {"generator": "constant", "value": 25.5}},
    }
    handle.write_manifest(
        "thermostat.yaml",
        model("thermostat-model", properties=[writable]),
        device("thermostat", model_name="thermostat-model", properties=[{"name": "temperature"}]),
    )
    await wait_for(lambda: "default/thermostat" in handle.twin.devices, what="thermostat known")
    client.publish(update_topic("thermostat"), GO_MAPPER_UPDATE, qos=1)
    (_where, body), *_ = await answer(results)
    assert "code" not in body, body
    assert body["twin"]["temperature"]["actual"]["value"] == "25.5"
    assert body["twin"]["temperature"]["expected"]["value"] == "30"
    assert body["twin"]["temperature"]["metadata"]["type"] == "float"
    assert handle.record("default/thermostat", "temperature").expected == "30"
    assert handle.record("default/thermostat", "temperature").actual == "25.5"


async def test_a_go_mapper_update_of_a_read_only_property_is_accepted(wired) -> None:
    """KubeEdge's mapper reports every twin with expected = its observed desired value, which is
    empty for a ReadOnly property (reference section 4.3): that is not an attempt to set one."""
    handle, client, results = wired
    payload = GO_MAPPER_UPDATE.replace('{"value":"30","metadata":{}}', '{"value":"","metadata":{}}')
    client.publish(update_topic(), payload, qos=1)
    (_where, body), *_ = await answer(results)
    assert "code" not in body, body
    await handle.wait_reported("default/sensor-1", "temperature", "25.5")
    assert handle.record("default/sensor-1", "temperature").expected in (None, "")


async def test_new_optional_twin_can_be_added_and_deleted(wired) -> None:
    handle, client, results = wired
    client.publish(
        update_topic(), b'{"twin":{"extra":{"actual":{"value":"AAEC"},"metadata":{"type":"bytes"}}}}', qos=1
    )
    await handle.wait_reported("default/sensor-1", "extra", "AAEC")
    assert handle.record("default/sensor-1", "extra").type == "bytes"
    client.publish(update_topic(), b'{"twin":{"extra":null}}', qos=1)
    await wait_for(lambda: handle.record("default/sensor-1", "extra").deleted, what="deleted")
    body = (await answer(results, 2))[-1][1]
    assert body["twin"] == {"extra": None}


async def test_state_updates_and_get_of_unknown_device(wired) -> None:
    handle, client, results = wired
    client.publish(update_topic(action=topics.STATE_UPDATE), b'{"event_id":"s","State":"ONLINE"}', qos=1)
    (_, body), *_ = await answer(results)
    assert body["device"]["state"] == "online"
    assert body["device"]["lastOnlineTime"].endswith("Z")
    edge_client = await handle.client()
    with pytest.raises(Exception, match="device default/ghost does not exist on node edge-1"):
        await edge_client.twin("default/ghost")


async def test_values_the_twin_could_not_store_or_echo_are_refused(wired) -> None:
    handle, client, results = wired
    huge = b'{"twin":{"label":{"actual":{"value":"2"},"metadata":{"unit":100000000000000000000000}}}}'
    client.publish(update_topic(), huge, qos=1)
    client.publish(
        update_topic(),
        b'{"timestamp":99999999999999999999999,"twin":{"label":{"actual":{"value":"3"}}}}',
        qos=1,
    )
    client.publish(
        update_topic(), b'{"twin":{"label":{"actual":{"value":"4"},"metadata":{"nested":{"a":1}}}}}', qos=1
    )
    await answer(results, 3)
    assert all(body.get("code") == 400 for _, body in results[:3]), results
    client.publish(update_topic(), b'{"twin":{"label":{"actual":{"value":"5"}}}}', qos=1)
    await handle.wait_reported("default/sensor-1", "label", "5")
    edge_client = await handle.client()
    assert (await edge_client.twin("default/sensor-1"))["label"]["actual"]["value"] == "5"
