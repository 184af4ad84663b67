"""The virtual mapper passes the conformance suite every mapper runs."""

from kubeedge.testing.conformance import MapperConformance


class TestVirtualConformance(MapperConformance):
    pass
