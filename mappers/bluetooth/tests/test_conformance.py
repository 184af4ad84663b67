"""The kubeedge conformance suite, run against this mapper's simulator through a real edge."""

from kubeedge.testing.conformance import MapperConformance


class TestBluetoothConformance(MapperConformance):
    pass
