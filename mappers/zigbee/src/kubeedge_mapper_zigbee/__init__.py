"""A kubeedge protocol mapper for Zigbee devices, through zigpy and its radio libraries.

Distribution kubeedge-mapper-zigbee (GPL-3.0-or-later, as zigpy is GPL-3.0).
"""
