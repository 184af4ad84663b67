"""The edge runtime: the process that runs the bus, the twin, the device sources and the mappers."""
