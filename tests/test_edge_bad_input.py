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


# ------------------------------------------------------------------ hostile input (issue 19)


async def canary(client: BusClient, results: list, event_id: str) -> dict:
    """A twin/get of a known device, answered: the edge still serves."""
    client.publish(update_topic(action=topics.TWIN_GET), json.dumps({"event_id": event_id}), qos=1)
    answers = await wait_for(
        lambda: [body for _, body in results if body.get("event_id") == event_id],
        timeout=5,
        what=f"the answer to {event_id}",
    )
    assert "code" not in answers[0], answers[0]
    return answers[0]


async def test_a_topic_whose_reply_would_not_fit_mqtt_is_refused_and_the_edge_keeps_serving(wired) -> None:
    """Finding 1: the /result topic of a 65,533-byte topic is over MQTT's 65,535 bytes; publishing
    it raised struct.error in the twin writer, which died silently, and nothing was answered after."""
    handle, client, results = wired
    long_topic = topics.device_topic("ns", "m" * 65_503, topics.TWIN_GET)
    client.publish(long_topic, b'{"event_id":"long"}', qos=1)
    (where, body), *_ = await answer(results)
    assert where == "$ke/edge/edge-1/errors"
    assert body["code"] == 400 and body["event_id"] == "long"
    assert "longer than the 1024-byte limit (bus.maxTopicLength)" in body["reason"]
    assert len(body["reason"]) < 400, "the topic is quoted, not echoed whole"
    await canary(client, results, "after-long-topic")
    client.publish(update_topic(), b'{"twin":{"temperature":{"actual":{"value":"26"}}}}', qos=1)
    await handle.wait_reported("default/sensor-1", "temperature", "26")
    await handle.twin.flush()  # raises if the writer is not running


@pytest.mark.parametrize(
    "action",
    [topics.TWIN_GET, topics.TWIN_UPDATE, topics.STATE_UPDATE, "membership"],
)
async def test_deeply_nested_json_is_answered_with_the_senders_event_id(wired, action) -> None:
    """Finding 2: 10,000 levels of nesting raised RecursionError in the event-id parser."""
    _handle, client, results = wired
    client.subscribe(
        "$hw/events/node/+/membership/get/result", lambda t, p: results.append((t, json.loads(p)))
    )
    await asyncio.sleep(0.1)
    payload = b'{"event_id":"deep","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    topic = (
        topics.node_topic("edge-1", topics.MEMBERSHIP_GET)
        if action == "membership"
        else update_topic(action=action)
    )
    client.publish(topic, payload, qos=1)
    body = (await wait_for(lambda: [b for _, b in results if b.get("event_id") == "deep"], 5, what="answer"))[
        0
    ]
    if action in (topics.TWIN_UPDATE, topics.STATE_UPDATE):
        assert body["code"] == 400
        assert "nested deeper than the 200 levels" in body["reason"]
    else:  # a request whose payload carries nothing but its id is answered
        assert "code" not in body
    await canary(client, results, "after-deep")


async def test_a_lone_surrogate_in_the_event_id_gets_a_400(wired) -> None:
    """Finding 3: orjson refused to encode the echoed event id (TypeError) and nothing was answered."""
    _handle, client, results = wired
    client.publish(update_topic(), b'{"event_id":"\\udc00x","twin":{}}', qos=1)
    (where, body), *_ = await answer(results)
    assert where == update_topic() + "/result"
    assert body["code"] == 400 and body["event_id"] == ""  # the id cannot be echoed: it is not text
    assert "surrogate" in body["reason"]
    client.publish(update_topic(action=topics.TWIN_GET), b'{"event_id":"\\udc00y"}', qos=1)
    await answer(results, 2)
    await canary(client, results, "after-surrogate")


async def test_a_413_answer_carries_the_senders_event_id(wired) -> None:
    """Finding 4: the id was looked for in the first 200 bytes, as JSON, which never parses."""
    _handle, client, results = wired
    value = b"a" * 2_000_000
    client.publish(
        update_topic(), b'{"event_id":"big-1","twin":{"x":{"actual":{"value":"' + value + b'"}}}}', qos=1
    )
    (_, body), *_ = await answer(results)
    assert body["code"] == 413 and body["event_id"] == "big-1"
    assert "(bus.maxPayload)" in body["reason"]


@pytest.fixture
async def few_twins(edge, broker_url):
    modules = {"standalone": {"debounceMs": 50, "rescanMs": 100}, "twin": {"maxOptionalTwins": 3}}
    handle = await edge(bus_url=broker_url, mappers={}, modules=modules)
    handle.write_manifest("sensor.yaml", model(), device())
    await wait_for(lambda: "default/sensor-1" in handle.twin.devices, what="device known")
    results: list[tuple[str, dict]] = []
    client = BusClient(handle.core.context.bus_url)
    await client.start()
    client.subscribe("$hw/events/device/+/+/twin/+/result", lambda t, p: results.append((t, json.loads(p))))
    await asyncio.sleep(0.1)
    yield handle, client, results
    await client.stop()


def optional_twin(name: str, value: str = "1") -> bytes:
    return json.dumps({"event_id": name, "twin": {name: {"actual": {"value": value}}}}).encode()


async def test_optional_twins_per_device_are_bounded(few_twins) -> None:
    """Finding 5: fuzzing left one device with 2,949 optional twins and a 16 MB twin/get answer."""
    handle, client, results = few_twins
    for name in ("o1", "o2", "o3"):
        client.publish(update_topic(), optional_twin(name), qos=1)
    await answer(results, 3)
    assert all("code" not in body for _, body in results), results
    client.publish(update_topic(), optional_twin("o4"), qos=1)
    (_, body) = (await answer(results, 4))[3]
    assert body["code"] == 413 and body["event_id"] == "o4"
    assert body["reason"] == (
        "device default/sensor-1: 1 new twin(s) would make 4 optional twins, more than the limit "
        "of 3 per device (modules.twin.maxOptionalTwins)"
    )
    # existing optional twins are still updated, and deleting one makes room
    client.publish(update_topic(), optional_twin("o1", "2"), qos=1)
    await handle.wait_reported("default/sensor-1", "o1", "2")
    client.publish(update_topic(), b'{"twin":{"o1":null}}', qos=1)
    client.publish(update_topic(), optional_twin("o4"), qos=1)
    await handle.wait_reported("default/sensor-1", "o4", "1")
    # adding and deleting ever new names does not grow the device: tombstones are dropped
    for i in range(12):
        client.publish(update_topic(), optional_twin(f"n{i}"), qos=1)
        client.publish(update_topic(), json.dumps({"twin": {f"n{i}": None}}), qos=1)
    await canary(client, results, "after-churn")
    twins = handle.twin.devices["default/sensor-1"].twins
    assert len(twins) <= 3 + 3 + 4, sorted(twins)  # spec twins, optional ones, tombstones up to the limit


async def test_a_sender_over_the_message_rate_is_told_and_others_are_served(edge, broker_url) -> None:
    handle = await edge(bus_url=broker_url, mappers={}, bus={"maxMessageRate": 20})
    handle.write_manifest("sensor.yaml", model(), device(), device("sensor-2"))
    await wait_for(lambda: "default/sensor-2" in handle.twin.devices, what="devices known")
    results: list[tuple[str, dict]] = []
    client = BusClient(handle.core.context.bus_url)
    await client.start()
    client.subscribe("$hw/events/device/+/+/twin/+/result", lambda t, p: results.append((t, json.loads(p))))
    await asyncio.sleep(0.1)
    for i in range(200):  # a burst of 40 is let through; the rest, sent at once, is over
        client.publish(
            update_topic(),
            json.dumps({"event_id": f"f{i}", "twin": {"label": {"actual": {"value": str(i)}}}}),
            qos=1,
        )
    limited = await wait_for(
        lambda: [b for _, b in results if b.get("code") == 429], timeout=5, what="a 429 answer"
    )
    assert "default/sensor-1: more than 20 messages/s (bus.maxMessageRate)" in limited[0]["reason"]
    assert handle.twin.stats.rate_limited > 0
    client.publish(update_topic("sensor-2", action=topics.TWIN_GET), b'{"event_id":"other"}', qos=1)
    await wait_for(lambda: [b for _, b in results if b.get("event_id") == "other"], 5, what="sensor-2 served")
    await client.stop()


async def test_rejections_are_logged_once_per_sender_and_reason(wired, caplog) -> None:
    handle, client, results = wired
    caplog.set_level("WARNING", logger="kubeedge.twin.module")
    for _ in range(20):
        client.publish(update_topic(), b"{not json", qos=1)
    await answer(results, 20)
    lines = [r for r in caplog.records if "refused (400)" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelname == "WARNING"
    assert "device default/sensor-1: payload is not valid JSON" in lines[0].getMessage()
    handle.twin._rejections.flush()
    summary = [r.getMessage() for r in caplog.records if "more like it" in r.getMessage()]
    assert summary and "(and 19 more like it in the last 60s)" in summary[0]


async def test_publishing_what_mqtt_cannot_carry_is_refused_without_raising(edge, caplog) -> None:
    handle = await edge(mappers={})
    bus = handle.bus
    got: list[bytes] = []
    bus.subscribe("$ke/edge/edge-1/test", lambda t, p: got.append(p))
    await asyncio.sleep(0.1)
    assert bus.publish("$ke/edge/edge-1/" + "x" * 70_000, b"{}") is False
    assert bus.publish("$ke/edge/edge-1/+", b"{}", qos=1) is False
    assert bus.publish("$ke/edge/edge-1/\udc00", b"{}") is False
    assert bus.refused == 3
    assert "more than MQTT's 65,535" in caplog.text
    bus.publish("$ke/edge/edge-1/test", b"still connected")
    await wait_for(lambda: got, what="a message after the refusals")


async def test_membership_get_is_answered_at_most_20_times_a_second(wired) -> None:
    """Each answer lists every device: a flood of requests must not cost the edge that many lists."""
    _handle, client, results = wired
    client.subscribe(
        "$hw/events/node/+/membership/get/result", lambda t, p: results.append((t, json.loads(p)))
    )
    await asyncio.sleep(0.1)
    for i in range(200):
        client.publish(
            topics.node_topic("edge-1", topics.MEMBERSHIP_GET), json.dumps({"event_id": f"m{i}"}), qos=1
        )
    limited = await wait_for(lambda: [b for _, b in results if b.get("code") == 429], 5, what="a 429 answer")
    assert limited[0]["reason"].startswith("(node topics): more than 20 messages/s (membership/get answers")
    await canary(client, results, "after-membership-flood")
    assert len([b for _, b in results if "devices" in b]) < 100
