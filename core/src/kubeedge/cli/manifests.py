"""``kubeedge validate`` and ``kubeedge crds``: manifests offline."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape

from kubeedge.api.crd import crds as crd_objects
from kubeedge.api.crd import crds_yaml
from kubeedge.api.device import Device, DeviceModel
from kubeedge.api.manifests import (
    DEFAULT_LIMITS,
    ManifestLimits,
    PathPart,
    Problem,
    parse_documents,
    read_documents,
)
from kubeedge.api.validation import (
    ConfigCheck,
    Report,
    Skipped,
    check_config_data,
    validate_documents,
)

if TYPE_CHECKING:
    from kubeedge.driver import Driver


@click.command()
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    metavar="FILE_OR_DIR",
    help="Manifest file, folder (every .yaml/.yml/.json under it), or - for standard input. Repeatable.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per problem, for scripts.",
)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: (
        os.environ.get("KUBEEDGE_CONFIG") or ("edge.yaml" if Path("edge.yaml").exists() else None)
    ),
    help="Edge configuration whose modules.standalone.limits apply, so a file is judged as that "
    "edge will judge it [env KUBEEDGE_CONFIG; default ./edge.yaml if present; else the default limits].",
)
def validate(paths: tuple[str, ...], output: str, config_path: Path | None) -> None:
    """Check Device and DeviceModel manifests without a cluster.

    Checks the schema (what kubectl apply would), the rules KubeEdge enforces (unique property
    names, DNS-1123 names, cycles >= 0, enum values) and the links between objects (the model
    exists, properties exist in it, visitors speak the device's protocol, desired values fit the
    model's type and range). When a device's mapper is installed, its configData models run too,
    as the mapper will run them; otherwise a line says which protocols were not checked.
    Every problem names file, line, document, object and field. Input with no objects is an
    error, as for kubectl apply. Files are read within limits (size, nesting, aliases, integer
    digits; see the README). Exit status: 0 when everything is valid, 1 otherwise.

    \b
    Examples:
      kubeedge validate -f examples/
      kubectl get devices,devicemodels -A -o yaml | kubeedge validate -f -
    """
    report, skipped = _validate(paths, _limits(config_path))
    if output == "json":
        click.echo(json.dumps([p.__dict__ for p in report.all_problems], indent=2))
        for note in skipped:
            click.echo(f"- {note}", err=True)
    else:
        _print_report(report, skipped)
    sys.exit(0 if report.ok else 1)


def _limits(config_path: Path | None) -> ManifestLimits:
    """The manifest limits of the edge configuration at ``config_path`` (the defaults without one)."""
    if config_path is None:
        return DEFAULT_LIMITS
    from pydantic import ValidationError

    from kubeedge.config import load_config
    from kubeedge.edge.standalone import StandaloneSettings
    from kubeedge.errors import KubeEdgeError

    try:
        config = load_config(config_path)
    except KubeEdgeError as exc:
        raise click.ClickException(str(exc)) from None
    entry = config.modules.get("standalone")
    try:
        return StandaloneSettings.model_validate(entry.settings if entry else {}).limits
    except ValidationError as exc:
        lines = [
            f"{config_path}: modules.standalone.{'.'.join(map(str, e['loc']))}: {e['msg']}"
            for e in exc.errors()
        ]
        raise click.ClickException("\n".join(lines)) from None


def _validate(
    paths: tuple[str, ...], limits: ManifestLimits = DEFAULT_LIMITS
) -> tuple[Report, list[Skipped]]:
    documents, problems = read_documents((Path(p) for p in paths if p != "-"), limits)
    if "-" in paths:
        # One character more than the limit is enough to know the input is too big.
        text = sys.stdin.read(limits.max_file_bytes + 1)
        stdin_documents, stdin_problems = parse_documents("<stdin>", text, limits)
        documents += stdin_documents
        problems += stdin_problems
    report = validate_documents(documents)
    report.problems[:0] = problems
    if not documents and not problems:
        report.problems.append(
            Problem(", ".join(paths), "no objects found: the input is empty (kubectl apply refuses it too)")
        )
    protocols = {c.obj.protocol_name or "" for c in report.objects if c.valid and isinstance(c.obj, Device)}
    from kubeedge.plugins import mapper_drivers  # imported when used: every command loads this module

    checks: dict[str, ConfigCheck | str] = {}
    for protocol, driver in mapper_drivers(protocols - {""}).items():
        checks[protocol] = driver if isinstance(driver, str) else functools.partial(_plan, driver)
    skipped = check_config_data(report, checks)
    return report, skipped


def _plan(
    driver: type[Driver[Any, Any]], device: Device, model: DeviceModel
) -> Iterable[tuple[tuple[PathPart, ...], str]]:
    """What the mapper refuses in a device's configData: the mapper's own planning step."""
    from kubeedge.mapper.runtime import plan_device

    return plan_device(driver, device, model).located


def _print_report(report: Report, skipped: list[Skipped]) -> None:
    console = Console(highlight=False, soft_wrap=True)
    for problem in report.problems:
        console.print(f"[red]✗[/] {escape(str(problem))}")
    for checked in report.objects:
        where = f"{checked.document.source}, document {checked.document.index}"
        if checked.valid:
            console.print(f"[green]✓[/] {escape(where)}: {escape(checked.label)} is valid")
        for problem in checked.problems:
            console.print(f"[red]✗[/] {escape(str(problem))}")
    for ignored in report.ignored:
        what = escape(ignored.label) if ignored.kind else "not a Kubernetes object (no kind)"
        console.print(
            f"[dim]- {escape(ignored.document.source)}, document {ignored.document.index}: "
            f"{what}, skipped (not a Device or DeviceModel)[/]"
        )
    for note in skipped:
        console.print(f"[dim]- {escape(str(note))}[/]")
    valid = sum(1 for c in report.objects if c.valid)
    bad = len(report.objects) - valid
    problems = len(report.all_problems)
    if report.ok:
        console.print(f"[green]{valid} object(s) valid[/]")
    else:
        console.print(f"[red]{problems} problem(s)[/]: {bad} invalid object(s), {valid} valid")


@click.command()
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
def crds(output: str) -> None:
    """Print the Device and DeviceModel CustomResourceDefinitions.

    \b
    Install them in a cluster:
      kubeedge crds | kubectl apply -f -
    """
    if output == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": crd_objects()}, indent=2))
    else:
        click.echo(crds_yaml(), nl=False)
