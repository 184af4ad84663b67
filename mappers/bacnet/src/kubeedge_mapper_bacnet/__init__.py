"""A kubeedge protocol mapper for Bacnet devices.

Distribution kubeedge-mapper-bacnet.
"""

from kubeedge_mapper_bacnet.driver import BacnetDriver

__all__ = ["BacnetDriver"]
