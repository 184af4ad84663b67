"""The hub's door: tokens checked before the upgrade, TLS required beyond loopback, size and rate
limits per connection, reports only for the node's own devices."""

from __future__ import annotations

import datetime as dt
import logging

import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from cloud_samples import device, model
from hub_client import HubClient, reported, wait_for
from kubeedge.errors import ConfigError
from kubeedge_cloud.config import CloudConfig, load_cloud_config


async def refused(cloud, node: str, token: str | None) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as caught:
        await HubClient.open(cloud.url, node, token, cloud.client_tls)
    response = caught.value.response
    return response.status_code, (response.body or b"").decode()


async def test_a_missing_token_is_refused_with_401_and_the_reason(cloud, caplog) -> None:
    caplog.set_level(logging.WARNING, "kubeedge_cloud")
    status, body = await refused(cloud, "edge-1", None)
    assert status == 401
    assert "missing token" in body
    assert "refused a connection from 127.0.0.1 for node edge-1: 401 missing token" in caplog.text


async def test_a_token_signed_with_another_secret_is_refused(cloud) -> None:
    forged = jwt.encode({"node": "edge-1", "iat": 1, "exp": 2**40}, b"x" * 64, algorithm="HS256")
    status, body = await refused(cloud, "edge-1", forged)
    assert (status, body.strip()) == (401, "token signature is not valid: not signed by this cloud's secret")


async def test_an_expired_token_is_refused_saying_when_it_expired(cloud) -> None:
    issued = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    status, body = await refused(cloud, "edge-1", cloud.token("edge-1", ttl=60, now=issued))
    assert status == 401
    assert "token expired at 2020-01-01T00:01:00+00:00" in body


async def test_another_nodes_token_is_refused_with_403(cloud, caplog) -> None:
    caplog.set_level(logging.WARNING, "kubeedge_cloud")
    status, body = await refused(cloud, "edge-1", cloud.token("edge-2"))
    assert (status, body.strip()) == (403, "token is for node edge-2, not edge-1")
    assert "403 token is for node edge-2, not edge-1" in caplog.text


async def test_garbage_and_a_token_without_node_are_refused(cloud) -> None:
    assert (await refused(cloud, "edge-1", "not-a-jwt"))[0] == 401
    no_node = jwt.encode({"iat": 1, "exp": 2**40}, cloud.secret, algorithm="HS256")
    status, body = await refused(cloud, "edge-1", no_node)
    assert (status, body.strip()) == (401, "token has no 'node' claim")


async def test_a_path_that_names_no_node_is_404(cloud) -> None:
    from websockets.asyncio.client import connect

    with pytest.raises(InvalidStatus) as caught:
        await connect(f"{cloud.url}/v1/nodes/Not_A_Node/events", ssl=cloud.client_tls)
    assert caught.value.response.status_code == 404


async def test_a_valid_token_connects(cloud) -> None:
    client = await cloud.connect("edge-1")
    await client.sync()
    objects, sent = await client.until_synced()
    assert (objects, sent) == ([], 0)


def test_a_plain_listen_beyond_loopback_is_refused_naming_the_keys(tmp_path) -> None:
    path = tmp_path / "cloud.yaml"
    path.write_text("listen: 0.0.0.0:10000\n")
    with pytest.raises(ConfigError) as caught:
        load_cloud_config(path)
    message = str(caught.value)
    assert "listen: 0.0.0.0 is not a loopback address and tls is not set" in message
    assert "tls.certFile and tls.keyFile" in message
    # loopback needs no TLS; TLS allows any address
    assert CloudConfig(listen="127.0.0.1:1").tls is None
    CloudConfig.model_validate({"listen": "0.0.0.0:1", "tls": {"certFile": "a", "keyFile": "b"}})


async def test_a_plain_client_cannot_talk_to_the_tls_hub(cloud) -> None:
    url = cloud.url.replace("wss://", "ws://")
    with pytest.raises(InvalidMessage, match="did not receive a valid HTTP response"):
        await HubClient.open(url, "edge-1", cloud.token("edge-1"), None)
    assert cloud.hub.sessions == {}


async def test_an_oversized_message_closes_the_connection_with_a_reason(cloud_factory, caplog) -> None:
    caplog.set_level(logging.WARNING, "kubeedge_cloud")
    cloud = await cloud_factory(limits={"maxMessageBytes": 4096})
    client = await cloud.connect("edge-1")
    await client.send("x" * 5000)
    with pytest.raises(ConnectionClosed) as caught:
        await client.recv()
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1009
    await wait_for(lambda: cloud.hub.closed_too_big == 1, "the hub to count the closed connection")
    assert "closed its connection: a message over 4096 bytes" in caplog.text


async def test_a_fast_sender_is_read_more_slowly_and_nothing_is_lost(cloud_factory, caplog) -> None:
    caplog.set_level(logging.WARNING, "kubeedge_cloud")
    cloud = await cloud_factory(limits={"messagesPerSecond": 50, "burst": 5})
    client = await cloud.connect("edge-1")
    await client.sync()
    await client.until_synced()
    pings = [
        await client.send(client_keepalive()) for _ in range(20)
    ]  # 20 messages at a budget of 5 + 50/s: about 0.3 s of throttling
    last = await client.report({})  # an empty report is acked at once
    answer = await client.answer_to(last)
    assert answer.route.operation == "ack"
    session = cloud.hub.sessions["edge-1"]
    assert session.received == len(pings) + 2
    assert session.throttled > 0
    assert "over 50 messages/s; read more slowly" in caplog.text


def client_keepalive():
    from kubeedge.api.channel import Message, Route

    return Message(route=Route(source="edgehub", group="hub", operation="keepalive"))


async def test_a_report_for_a_device_of_another_node_is_refused_and_logged(cloud, caplog) -> None:
    caplog.set_level(logging.WARNING, "kubeedge_cloud")
    cloud.write("plant.yaml", model(), device("mine", "edge-1"), device("theirs", "edge-2"))
    await cloud.reload()
    client = await cloud.connect("edge-1")
    await client.sync()
    await client.until_synced()
    message = await client.report({"default/theirs": {"twins": {"temperature": reported("1")}}})
    answer = await client.answer_to(message)
    assert answer.route.operation == "error"
    assert answer.content["code"] == 403
    assert "not assigned to node edge-1: default/theirs" in answer.content["reason"]
    assert "refused a report: device(s) not assigned to node edge-1: default/theirs" in caplog.text
    assert await cloud.source.read_status() == {}
    # with its own device in the same report: that one is stored, the other refused
    message = await client.report(
        {
            "default/theirs": {"twins": {"temperature": reported("2")}},
            "default/mine": {"twins": {"temperature": reported("3")}},
        }
    )
    answer = await client.answer_to(message)
    assert answer.content["code"] == 403
    assert "(the others were stored)" in answer.content["reason"]
    status = await cloud.source.read_status()
    assert list(status) == ["default/mine"]
    assert status["default/mine"].twins["temperature"].reported == "3"
