"""``kubeedge mapper discover PROTOCOL``: manifests for the devices a mapper finds on its network."""

from __future__ import annotations

import asyncio
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from kubeedge.discovery import Discoverer
    from kubeedge.driver import Driver


def _options(pairs: tuple[str, ...]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="'-O'")
        options[key] = value
    return options


@click.command("discover")
@click.argument("protocol")
@click.option(
    "-O",
    "--option",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A discovery option of the mapper (repeatable), e.g. -O broker=mqtt://10.0.0.2:1883.",
)
@click.option(
    "--seconds",
    "--timeout",
    "seconds",
    type=click.FloatRange(min=0.1, max=600),
    help="How long to listen (the mapper's default).",
)
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of the manifests.")
@click.option(
    "-o",
    "--output-dir",
    "output_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per DeviceModel and per Device here (default: print them as one YAML stream).",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist in the output folder.")
def discover(
    protocol: str,
    pairs: tuple[str, ...],
    seconds: float | None,
    namespace: str,
    output_dir: Path | None,
    force: bool,
) -> None:
    """Find the devices PROTOCOL's mapper reaches and write their Device and DeviceModel manifests.

    What the mapper finds (and which -O options it takes) is its own; the manifests are checked
    as `kubeedge validate` checks them, the mapper's configData models included, before anything
    is written. Exit status 1 if the network cannot be reached, an option is wrong, or nothing
    was found.

    \b
    Examples:
      kubeedge mapper discover mqtt -O broker=mqtt://192.168.1.5:1883 -o manifests/
      kubeedge mapper discover mqtt -O broker=mqtt://hub:1883 -O username=ha -O passwordEnv=MQTT_PW
    """
    from pydantic import ValidationError

    from kubeedge.api.manifests import format_path
    from kubeedge.discovery import to_manifests
    from kubeedge.errors import KubeEdgeError, PluginError
    from kubeedge.plugins import PluginHost, installed_plugins

    if protocol not in installed_plugins("mapper"):
        raise click.ClickException(f"no mapper for protocol {protocol!r} is installed (kubeedge mapper list)")
    host = PluginHost()
    try:
        statuses = host.require("mapper", [protocol], origin="named on the command line")
        driver = host.drivers(statuses)[protocol]
    except PluginError as exc:
        raise click.ClickException(str(exc)) from None
    found_classes = [c for c in host.collect("kubeedge_register_discoverers") if c.protocol == protocol]
    if not found_classes:
        status = next(s for s in statuses if s.name == protocol)
        raise click.ClickException(f"the {protocol} mapper ({status.distribution}) has no discovery")
    discoverer_cls: type[Discoverer[Any]] = found_classes[0]
    try:
        options = discoverer_cls.options_model.model_validate(_options(pairs))
    except ValidationError as exc:
        lines = [f"-O {format_path(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise click.ClickException("\n".join(lines)) from None
    listen = seconds if seconds is not None else discoverer_cls.default_seconds
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(f"listening for {listen:g}s ({protocol})…")
    try:
        found = asyncio.run(discoverer_cls().discover(options, listen))
    except (KubeEdgeError, OSError) as exc:
        raise click.ClickException(f"discovery failed: {exc}") from None
    if not found:
        raise click.ClickException(f"no {protocol} devices found in {listen:g}s")
    documents = to_manifests(found, protocol, namespace)
    problems = _check(documents, driver)
    if problems:
        raise click.ClickException(
            "the mapper's discovery made manifests that do not validate (a bug in the mapper):\n"
            + "\n".join(problems)
        )
    models = sum(1 for d in documents if d["kind"] == "DeviceModel")
    if output_dir is None:
        click.echo(yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True), nl=False)
    else:
        _write(documents, output_dir, force)
    err.print(
        f"[green]✓[/] {len(found)} device(s) of {models} kind(s)"
        + (f" in {escape(str(output_dir))}" if output_dir else "")
    )


def _check(documents: list[dict[str, Any]], driver: type[Driver[Any, Any]]) -> list[str]:
    """What `kubeedge validate` would say about the manifests."""
    from kubeedge.api.manifests import parse_documents
    from kubeedge.api.validation import check_config_data, validate_documents
    from kubeedge.cli.manifests import _plan

    parsed, problems = parse_documents("<discovered>", yaml.safe_dump_all(documents, sort_keys=False))
    report = validate_documents(parsed)
    report.problems[:0] = problems
    check_config_data(report, {driver.protocol: functools.partial(_plan, driver)})
    return [str(p) for p in report.all_problems]


def _write(documents: list[dict[str, Any]], folder: Path, force: bool) -> None:
    files = {
        folder
        / (
            f"{d['metadata']['name']}.model.yaml"
            if d["kind"] == "DeviceModel"
            else f"{d['metadata']['name']}.yaml"
        ): d
        for d in documents
    }
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        raise click.ClickException(f"these files exist (--force overwrites them): {', '.join(existing)}")
    folder.mkdir(parents=True, exist_ok=True)
    for path, document in files.items():
        path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    click.echo("\n".join(str(p) for p in files), file=sys.stdout)
