"""Topic names of the edge MQTT bus, as KubeEdge (v1.17+) spells them.

Device topics are ``$hw/events/device/{namespace}/{name}/{action}``; node topics are
``$hw/events/node/{node}/membership/{action}``. Parsing splits on ``/`` by position, so a
namespace called ``device`` or ``events`` is read correctly (KubeEdge's ``strings.Index`` is not).
"""

from __future__ import annotations

from dataclasses import dataclass

from kubeedge.errors import WireError

DEVICE_PREFIX = "$hw/events/device/"
NODE_PREFIX = "$hw/events/node/"
EDGE_PREFIX = "$ke/edge/"
"""Our own topics (not KubeEdge's): edge status, mapper assignments, errors (docs/wire.md)."""

# actions a mapper (or any client) publishes to the edge core
TWIN_UPDATE = "twin/update"
TWIN_GET = "twin/get"
TWIN_CLOUD_UPDATED = "twin/cloud_updated"
STATE_UPDATE = "state/update"
# actions the edge core publishes
TWIN_UPDATE_RESULT = "twin/update/result"
TWIN_UPDATE_DELTA = "twin/update/delta"
TWIN_UPDATE_DOCUMENT = "twin/update/document"
TWIN_GET_RESULT = "twin/get/result"
STATE_UPDATE_RESULT = "state/update/result"
DEVICE_UPDATED = "updated"

MEMBERSHIP_GET = "membership/get"
MEMBERSHIP_GET_RESULT = "membership/get/result"
MEMBERSHIP_UPDATED = "membership/updated"

# our actions under $ke/edge/{node}/
EDGE_STATUS = "status"
EDGE_ERRORS = "errors"
MAPPER_HELLO = "hello"
MAPPER_GOODBYE = "goodbye"
MAPPER_ASSIGNMENTS = "assignments"

MQTT_TOPIC_LIMIT = 65_535
"""Bytes an MQTT topic can have (its length is a 16-bit field)."""
REPLY_SUFFIX = "/result"
"""The longest suffix the edge adds to a topic it was sent on, to answer on."""

INBOUND_DEVICE_ACTIONS = frozenset({TWIN_UPDATE, TWIN_GET, TWIN_CLOUD_UPDATED, STATE_UPDATE})
# The subscriptions the edge core's twin module makes (KubeEdge's SubTopics, device part).
EDGE_SUBSCRIPTIONS = (
    f"{DEVICE_PREFIX}+/+/twin/+",
    f"{DEVICE_PREFIX}+/+/{STATE_UPDATE}",
    f"{NODE_PREFIX}+/{MEMBERSHIP_GET}",
)


def device_topic(namespace: str, name: str, action: str) -> str:
    return f"{DEVICE_PREFIX}{namespace}/{name}/{action}"


def node_topic(node: str, action: str) -> str:
    return f"{NODE_PREFIX}{node}/{action}"


def edge_topic(node: str, action: str) -> str:
    return f"{EDGE_PREFIX}{node}/{action}"


def mapper_topic(node: str, protocol: str, action: str) -> str:
    return f"{EDGE_PREFIX}{node}/mappers/{protocol}/{action}"


@dataclass(frozen=True)
class DeviceTopic:
    namespace: str
    name: str
    action: str

    @property
    def device_key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class NodeTopic:
    node: str
    action: str


def parse_topic(
    topic: str, max_length: int = MQTT_TOPIC_LIMIT - len(REPLY_SUFFIX)
) -> DeviceTopic | NodeTopic:
    """Split a bus topic into its parts; :class:`WireError` (400) names what is wrong with it.

    A topic longer than ``max_length`` bytes is refused first: the edge answers on the topic
    plus :data:`REPLY_SUFFIX`, which must still fit MQTT's 16-bit topic length.
    """
    size = len(topic) if topic.isascii() else len(topic.encode("utf-8", "surrogatepass"))
    if size > max_length:
        limit = f"the {max_length}-byte limit (bus.maxTopicLength)"
        raise WireError(f"topic {quote(topic)} is {size} bytes, longer than {limit}")
    if topic.startswith(DEVICE_PREFIX):
        parts = topic[len(DEVICE_PREFIX) :].split("/")
        if len(parts) < 3 or not parts[0] or not parts[1]:
            raise WireError(f"topic {quote(topic)} is not {DEVICE_PREFIX}{{namespace}}/{{name}}/{{action}}")
        return DeviceTopic(parts[0], parts[1], "/".join(parts[2:]))
    if topic.startswith(NODE_PREFIX):
        parts = topic[len(NODE_PREFIX) :].split("/")
        if len(parts) < 2 or not parts[0]:
            raise WireError(f"topic {quote(topic)} is not {NODE_PREFIX}{{node}}/{{action}}")
        return NodeTopic(parts[0], "/".join(parts[1:]))
    raise WireError(f"topic {quote(topic)} is not a device or node topic")


def quote(text: str, limit: int = 100) -> str:
    """``repr(text)``, cut to its first ``limit`` characters (an error never echoes a whole topic)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"
