"""kubeedge-cloud: the hub edge nodes connect to, the device controller and the device sources."""

__version__ = "0.1.0"
