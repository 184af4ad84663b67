"""The Zigbee mapper passes the kubeedge conformance suite against an emulated, paired device."""

from kubeedge.testing.conformance import MapperConformance


class TestZigbeeConformance(MapperConformance):
    pass
