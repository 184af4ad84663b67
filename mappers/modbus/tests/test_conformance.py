"""The Modbus mapper passes the kubeedge conformance suite against a pymodbus server."""

from kubeedge.testing.conformance import MapperConformance


class TestModbusConformance(MapperConformance):
    pass
