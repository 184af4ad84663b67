"""The cloud's commands, added to ``kubeedge`` through the ``kubeedge.cli`` entry point group.

* ``kubeedge cloud run -c cloud.yaml``: the cloud, until Ctrl-C;
* ``kubeedge token create NODE [--ttl 24h] -c cloud.yaml``: a node token, on standard output;
* ``kubeedge device list --cloud`` / ``device get --cloud NAME``: status as the cloud holds it.

Core's ``device list`` and ``device get`` know nothing of the cloud (core never imports
``kubeedge_cloud``): this plugin replaces each, in the ``device`` group, with a command that has
the same parameters plus ``--cloud`` and calls the original without it. Imports stay cheap here:
every ``kubeedge`` invocation imports this module.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from kubeedge.plugins import hookimpl

CLOUD_CONFIG_ENV = "KUBEEDGE_CLOUD_CONFIG"


def _default_cloud_config() -> Path | None:
    found = os.environ.get(CLOUD_CONFIG_ENV) or ("cloud.yaml" if Path("cloud.yaml").exists() else None)
    return Path(found) if found else None


def cloud_config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=_default_cloud_config,
        help=f"Cloud configuration file [env {CLOUD_CONFIG_ENV}; default ./cloud.yaml if present].",
    )(func)


def _load(config_path: Path | None) -> Any:
    from kubeedge.errors import KubeEdgeError
    from kubeedge_cloud.config import load_cloud_config

    try:
        return load_cloud_config(config_path)
    except KubeEdgeError as exc:
        raise click.ClickException(str(exc)) from None


# --------------------------------------------------------------------------- cloud run


@click.group()
def cloud() -> None:
    """Run the cloud: the hub edge nodes connect to, the device controller and its source."""


@cloud.command("run")
@cloud_config_option
def cloud_run(config_path: Path | None) -> None:
    """Run the cloud until Ctrl-C.

    \b
    A minimal cloud.yaml:
      listen: 0.0.0.0:10000
      tls: {certFile: hub.crt, keyFile: hub.key}   # required beyond loopback
      dataDir: ./cloud-data
      source: {kind: files, path: ./manifests}
    """
    import asyncio

    from kubeedge.cli.edge import console, stop_on_signals
    from kubeedge.cli.main import service_logging
    from kubeedge.errors import KubeEdgeError
    from kubeedge_cloud.runtime import CloudCore

    service_logging()
    config = _load(config_path)
    core = CloudCore(config)

    async def main() -> None:
        stop = stop_on_signals()
        await core.start()
        facts: dict[str, Any] = {}
        for module in core.modules:
            facts.update(module.describe())
        console.print(f"[bold green]cloud running[/] on {facts.get('hub', '?')}", highlight=False)
        console.print(f"  data      {config.data_dir}", highlight=False)
        console.print(f"  source    {facts.get('source', config.source.kind)}", highlight=False)
        tokens = f"kubeedge token create NODE -c {config_path or 'cloud.yaml'}"
        console.print(f"  tokens    {tokens}", highlight=False)
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(core.failed.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            console.print("stopping ...")
            await core.stop()
        if core.failure is not None:
            raise KubeEdgeError(f"cloud stopped: {core.failure}")

    try:
        asyncio.run(main())
    except (KubeEdgeError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


# --------------------------------------------------------------------------- token create


@click.group()
def token() -> None:
    """Node tokens: what an edge presents to the cloud's hub."""


@token.command("create")
@click.argument("node")
@click.option(
    "--ttl", default="24h", show_default=True, help="How long the token is valid: 90s, 30m, 24h, 7d."
)
@cloud_config_option
def token_create(node: str, ttl: str, config_path: Path | None) -> None:
    """Print a token for edge node NODE, signed with the cloud's secret.

    The secret (tokenSecretFile, default DATA_DIR/token.secret) is created on first use. Put the
    token in the edge's cloud.token (or a file named by cloud.tokenFile).
    """
    from kubeedge.errors import KubeEdgeError
    from kubeedge_cloud.tokens import create_token, load_or_create_secret, parse_ttl

    if not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", node) or len(node) > 253:
        raise click.BadParameter(f"{node!r} is not a valid node name (DNS-1123 subdomain)", param_hint="NODE")
    config = _load(config_path)
    try:
        lifetime = parse_ttl(ttl)
        secret = load_or_create_secret(config.secret_path)
    except KubeEdgeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(create_token(secret, node, lifetime))
    expires = dt.datetime.now(dt.UTC) + lifetime
    click.echo(f"token for node {node}, valid until {expires.isoformat(timespec='seconds')}", err=True)


# --------------------------------------------------------------------------- device list/get --cloud


def _with_cloud_option(original: click.Command, cloud_callback: Callable[..., None]) -> click.Command:
    """``original`` plus ``--cloud``: with it, ``cloud_callback`` answers instead."""

    def callback(**kwargs: Any) -> None:
        ctx = click.get_current_context()
        if not kwargs.pop("cloud"):
            ctx.invoke(original.callback, **kwargs)  # type: ignore[arg-type]
            return
        if ctx.get_parameter_source("config_path") == click.core.ParameterSource.DEFAULT:
            kwargs["config_path"] = _default_cloud_config()  # the edge's default is not ours
        cloud_callback(**kwargs)

    help_text = (original.help or "").rstrip() + (
        "\n\nWith --cloud: the status the cloud holds (from the cloud's data folder; -c names the "
        "cloud's configuration, cloud.yaml), for devices of every node."
    )
    return click.Command(
        original.name,
        params=[
            *original.params,
            click.Option(["--cloud"], is_flag=True, help="Ask the cloud, not an edge (-c is cloud.yaml)."),
        ],
        callback=callback,
        help=help_text,
        short_help=original.short_help,
    )


def _cloud_list(config_path: Path | None, output: str, **_: Any) -> None:
    from kubeedge_cloud.views import device_list

    device_list(_load(config_path), output)


def _cloud_get(name: str, config_path: Path | None, output: str, **_: Any) -> None:
    from kubeedge_cloud.views import device_get

    device_get(_load(config_path), name, output)


@hookimpl
def kubeedge_register_commands(cli: click.Group) -> None:
    cli.add_command(cloud)
    cli.add_command(token)
    device = cli.commands.get("device")
    if isinstance(device, click.Group):
        for name, answer in (("list", _cloud_list), ("get", _cloud_get)):
            original = device.commands.get(name)
            if original is not None and not any(p.name == "cloud" for p in original.params):
                device.add_command(_with_cloud_option(original, answer), name)
