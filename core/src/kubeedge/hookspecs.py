# Hook specifications have no body: pluggy reads only their signature and docstring.
# mypy: disable-error-code="empty-body"
"""Every hook a kubeedge plugin can implement.

A plugin is a module named by an entry point in one of the groups of
:data:`kubeedge.plugins.ENTRY_POINT_GROUPS`; it implements hooks with the marker that
:mod:`kubeedge` exports::

    from kubeedge import hookimpl

    @hookimpl
    def kubeedge_register_drivers():
        return [AcmeDriver]

Only enabled plugins are imported (see :mod:`kubeedge.plugins`), so a hook is called on the
plugins the configuration enabled, plus the command plugins (which must stay cheap to import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from kubeedge.discovery import Discoverer
    from kubeedge.driver import Driver

PROJECT = "kubeedge"
hookspec = pluggy.HookspecMarker(PROJECT)


# --------------------------------------------------------------------------- mappers


@hookspec
def kubeedge_register_drivers() -> list[type[Driver[Any, Any]]]:
    """Return the protocol driver classes this plugin provides.

    Called once at start-up on every enabled plugin of the ``kubeedge.mappers`` group. Each class
    names its protocol in ``Driver.protocol``; the entry point's name must be that protocol, so
    ``pip install kubeedge-mapper-acme`` plus ``mappers: {acme: {}}`` in the edge configuration is
    all it takes. Results from all plugins are collected; a protocol registered twice is an error.

    :return: a list of :class:`kubeedge.Driver` subclasses.
    """


@hookspec
def kubeedge_register_discoverers() -> list[type[Discoverer[Any]]]:
    """Return the discoverer classes this mapper provides: how it finds devices on its network.

    Called by ``kubeedge mapper discover PROTOCOL`` on the plugin of the ``kubeedge.mappers``
    group named PROTOCOL (imported for the command, enabled in the configuration or not), and
    on nothing else: a mapper without discovery need not implement it. Each class names its
    protocol in ``Discoverer.protocol`` (the mapper's own) and its command-line options
    (``-O key=value``) in ``Discoverer.options_model``. The command instantiates the class with
    no arguments, awaits ``discover(options, seconds)``, and writes what it returns (a list of
    :class:`kubeedge.FoundDevice`) as DeviceModel and Device manifests, after checking them with
    the mapper's own configData models.

    :return: a list of :class:`kubeedge.Discoverer` subclasses (usually one).
    """


# --------------------------------------------------------------------------- edge and cloud modules


@hookspec
def kubeedge_register_edge_modules() -> list[type[Any]]:
    """Return the edge module classes this plugin provides.

    Called once at edge start-up on every enabled plugin of the ``kubeedge.edge_modules`` group.
    Each class has a ``name`` equal to its entry point's name.

    :return: a list of :class:`kubeedge.EdgeModule` subclasses.
    """


@hookspec
def kubeedge_register_cloud_modules() -> list[type[Any]]:
    """Return the cloud module classes this plugin provides.

    Called once at cloud start-up on every enabled plugin of the ``kubeedge.cloud_modules``
    group. Each class has a ``name`` equal to its entry point's name.

    :return: a list of cloud module classes.
    """


# --------------------------------------------------------------------------- command line


@hookspec
def kubeedge_register_commands(cli: click.Group) -> None:
    """Add commands to the ``kubeedge`` command line.

    Called when the CLI starts, on every plugin of the ``kubeedge.cli`` group (these are always
    imported, so keep their import cheap: import protocol libraries inside the command).

    :param cli: the top-level ``kubeedge`` group; call ``cli.add_command(...)``.
    """
