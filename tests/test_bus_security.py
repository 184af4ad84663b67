"""The edge on an external broker with TLS and a password, or a client certificate, as production
runs it; wrong credentials and untrusted or missing certificates are refused with a clear message."""

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import trustme

from kubeedge.bus import BusClient
from kubeedge.testing import Mosquitto
from sample_devices import device, model


def tls_listener(folder: Path) -> tuple[trustme.CA, str]:
    """A CA and a server certificate for loopback in ``folder``; the Mosquitto lines that use them."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
    server.private_key_pem.write_to_path(str(folder / "server.key"))
    return (
        ca,
        f"cafile {folder / 'ca.pem'}\ncertfile {folder / 'server.pem'}\nkeyfile {folder / 'server.key'}\n",
    )


@pytest.fixture
def secure_broker(tmp_path):
    _, tls = tls_listener(tmp_path)
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    subprocess.run(
        [
            shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd",
            "-b",
            str(passwd),
            "edge",
            "s3cret",
        ],
        check=True,
    )
    broker = Mosquitto(extra=tls + f"password_file {passwd}\n").start()
    yield broker, tmp_path / "ca.pem"
    broker.close()


async def test_edge_over_tls_with_a_password(edge, secure_broker) -> None:
    broker, ca = secure_broker
    url = f"mqtts://127.0.0.1:{broker.port}"
    handle = await edge(
        bus_url=url, bus={"url": url, "username": "edge", "password": "s3cret", "caFile": str(ca)}
    )
    handle.write_manifest("a.yaml", model(), device("one"))
    await handle.wait_reported("default/one", "label", "hello")
    client = await handle.client()
    await client.set_desired("default/one", "setpoint", "12")
    await handle.wait_reported("default/one", "setpoint", "12")


async def test_wrong_password_and_untrusted_certificate_are_named(secure_broker) -> None:
    broker, ca = secure_broker
    url = f"mqtts://127.0.0.1:{broker.port}"
    bad_password = BusClient(url, username="edge", password="wrong", ca_file=ca)
    with pytest.raises(
        ConnectionError, match="refused this client: broker refused the connection: Not authorized"
    ):
        await asyncio.wait_for(bad_password.start(timeout=30), 5)  # at once, not after the timeout
    untrusted = BusClient(url, username="edge", password="s3cret")
    with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await asyncio.wait_for(untrusted.start(timeout=30), 5)
    good = BusClient(url, username="edge", password="s3cret", ca_file=ca)
    await good.start(timeout=5)
    seen = []
    good.subscribe("$hw/events/device/+/+/twin/update", lambda t, p: seen.append(json.loads(p)))
    await asyncio.sleep(0.1)
    good.publish("$hw/events/device/a/b/twin/update", b'{"twin":{}}')
    for _ in range(50):
        if seen:
            break
        await asyncio.sleep(0.02)
    assert seen == [{"twin": {}}]
    await good.stop()


@pytest.fixture
def mutual_tls_broker(tmp_path):
    """A broker that wants a client certificate from our CA and takes its CN as the user name."""
    ca, tls = tls_listener(tmp_path)
    edge_cert = ca.issue_cert("edge-1", common_name="edge-1")
    edge_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "edge.pem"))
    edge_cert.private_key_pem.write_to_path(str(tmp_path / "edge.key"))
    broker = Mosquitto(extra=tls + "require_certificate true\nuse_identity_as_username true\n").start()
    yield broker, tmp_path
    broker.close()


async def test_edge_with_a_client_certificate(edge, mutual_tls_broker) -> None:
    broker, certs = mutual_tls_broker
    url = f"mqtts://127.0.0.1:{broker.port}"
    handle = await edge(
        bus_url=url,
        bus={
            "url": url,
            "caFile": str(certs / "ca.pem"),
            "certFile": str(certs / "edge.pem"),
            "keyFile": str(certs / "edge.key"),
        },
    )
    handle.write_manifest("a.yaml", model(), device("one"))
    await handle.wait_reported("default/one", "label", "hello")
    client = await handle.client()
    await client.set_desired("default/one", "setpoint", "12")
    await handle.wait_reported("default/one", "setpoint", "12")
    # without the certificate, the same broker turns the client away, and says so at once
    anonymous = BusClient(url, ca_file=certs / "ca.pem")
    with pytest.raises(
        ConnectionError, match=r"rejected this client's TLS certificate .*CERTIFICATE_REQUIRED"
    ):
        await asyncio.wait_for(anonymous.start(timeout=30), 5)  # at once, not after the timeout
