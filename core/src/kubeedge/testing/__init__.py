"""Test helpers for kubeedge and its plugins, on real parts: a real broker, a real edge.

Shipped as a pytest plugin (entry point ``pytest11``: ``kubeedge``), so a mapper distribution's
tests get these fixtures by installing ``kubeedge-core``:

* ``mosquitto_url``: a Mosquitto broker started for the session on a free loopback port;
* ``embedded_url``: the embedded (amqtt) broker, per test;
* ``broker_url``: each test runs twice, once on each;
* ``edge``: a factory that starts an edge in process with a manifest folder (:class:`EdgeHandle`).
"""

from kubeedge.bus import free_port
from kubeedge.testing.brokers import Mosquitto, mosquitto_binary
from kubeedge.testing.edge import EdgeHandle, start_edge, wait_for

__all__ = ["EdgeHandle", "Mosquitto", "free_port", "mosquitto_binary", "start_edge", "wait_for"]
