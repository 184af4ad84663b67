"""A kubeedge protocol mapper for Mqtt devices.

Distribution kubeedge-mapper-mqtt.
"""

from kubeedge_mapper_mqtt.driver import MqttDriver

__all__ = ["MqttDriver"]
