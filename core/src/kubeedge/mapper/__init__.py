"""The mapper runtime: runs a protocol driver for every device assigned to it."""
