"""Registers the cloud's own modules, through the same entry points as third-party ones."""

from __future__ import annotations

from typing import Any

from kubeedge.plugins import hookimpl


@hookimpl
def kubeedge_register_cloud_modules() -> list[type[Any]]:
    from kubeedge_cloud.controllers.devices import DeviceController
    from kubeedge_cloud.hub.server import HubModule
    from kubeedge_cloud.sources.files import FilesSource
    from kubeedge_cloud.sources.kubernetes import KubernetesSource

    return [HubModule, DeviceController, FilesSource, KubernetesSource]
