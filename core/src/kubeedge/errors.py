"""The one exception hierarchy of kubeedge.

Every message names the object (``namespace/name``) and, where there is one, the field path
(``spec.properties[1].visitors.configData.register``), so a person can find what to fix.
"""

from __future__ import annotations


class KubeEdgeError(Exception):
    """Root of every error raised on purpose by kubeedge and its plugins."""


class ManifestError(KubeEdgeError):
    """A Device or DeviceModel manifest (or a set of them) is not valid."""

    def __init__(self, problems: list[object]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConfigError(KubeEdgeError):
    """A configuration file or value is not valid; the message names the key path."""


class PluginError(KubeEdgeError):
    """A plugin could not be found, imported or registered; the message names it."""


class WireError(KubeEdgeError):
    """A message on the bus or the cloud channel is malformed; ``code`` follows HTTP usage."""

    def __init__(self, reason: str, code: int = 400) -> None:
        self.reason = reason
        self.code = code
        super().__init__(reason)
