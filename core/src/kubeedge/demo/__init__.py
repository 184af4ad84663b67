"""Data for ``kubeedge demo``: the demo's Device and DeviceModel manifests."""
