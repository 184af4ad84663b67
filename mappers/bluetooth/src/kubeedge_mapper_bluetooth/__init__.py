"""A kubeedge protocol mapper for Bluetooth LE devices (bleak): GATT reads, writes and
notifications, advertisement-only sensors, connection slots per adapter, discovery.

Distribution kubeedge-mapper-bluetooth.
"""

from kubeedge_mapper_bluetooth.driver import BluetoothDriver

__all__ = ["BluetoothDriver"]
