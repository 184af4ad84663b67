"""Device sources: where Devices and DeviceModels come from and where their status goes."""
