"""kubeedge-mapper-virtual: devices simulated in process, for demos, tests and benchmarks."""

from kubeedge_mapper_virtual.driver import VirtualDriver
from kubeedge_mapper_virtual.simulator import SIMULATOR, Simulator

__all__ = ["SIMULATOR", "Simulator", "VirtualDriver"]
