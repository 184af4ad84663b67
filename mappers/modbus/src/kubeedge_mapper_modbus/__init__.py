"""kubeedge-mapper-modbus: Modbus TCP, RTU and RTU-over-TCP devices for kubeedge."""
