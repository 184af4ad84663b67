"""The BACnet mapper passes the kubeedge conformance suite against a bacpypes3 device application."""

from kubeedge.testing.conformance import MapperConformance


class TestBacnetConformance(MapperConformance):
    pass
