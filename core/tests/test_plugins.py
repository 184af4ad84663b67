"""The `pip install kubeedge-mapper-xyz` path, for real: throwaway distributions built and installed
into a temporary virtual environment, found through entry points, enabled by configuration."""

import os
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kubeedge.testing.venv import overlay_venv, pip_install

GOOD_DRIVER = """
import os
import signal
from kubeedge import Driver, hookimpl

with open(os.environ["IMPORT_LOG"], "a") as log:
    log.write(__name__ + "\\n")


class {cls}(Driver):
    protocol = "{protocol}"

    async def connect(self):
        pass

    async def read(self, prop):
        return 1


@hookimpl
def kubeedge_register_drivers():
    return [{cls}]
"""

AUDIT_MODULE = """
import json
import os
import signal
from pathlib import Path

from pydantic import BaseModel

from kubeedge import EdgeModule, hookimpl

with open(os.environ["IMPORT_LOG"], "a") as log:
    log.write(__name__ + "\\n")


class Settings(BaseModel):
    path: Path


class Audit(EdgeModule):
    # writes the name of every twin that changed (from the twin documents) to a file
    name = "audit"
    settings_model = Settings

    async def start(self):
        self.out = self.settings.path.open("a")
        self.context.bus.subscribe("$hw/events/device/+/+/twin/update/document", self.seen)

    def seen(self, topic, payload):
        for name in json.loads(payload)["twin"]:
            self.out.write(topic.split("/")[4] + " " + name + "\\n")
            self.out.flush()

    async def stop(self):
        self.out.close()


@hookimpl
def kubeedge_register_edge_modules():
    return [Audit]
"""

DISTRIBUTIONS = {
    # distribution: (import package, entry point group, entry point name, module source)
    "kubeedge-mapper-acme": (
        "kubeedge_mapper_acme",
        "kubeedge.mappers",
        "acme",
        GOOD_DRIVER.format(cls="Acme", protocol="acme"),
    ),
    "kubeedge-mapper-broken": (
        "kubeedge_mapper_broken",
        "kubeedge.mappers",
        "broken",
        "import pymodbus_that_is_not_installed\n",
    ),
    "kubeedge-mapper-dup-a": (
        "kubeedge_mapper_dup_a",
        "kubeedge.mappers",
        "dup",
        GOOD_DRIVER.format(cls="DupA", protocol="dup"),
    ),
    "kubeedge-mapper-dup-b": (
        "kubeedge_mapper_dup_b",
        "kubeedge.mappers",
        "dup",
        GOOD_DRIVER.format(cls="DupB", protocol="dup"),
    ),
    "kubeedge-mapper-nohooks": (
        "kubeedge_mapper_nohooks",
        "kubeedge.mappers",
        "nohooks",
        "import pluggy\nhookimpl = pluggy.HookimplMarker('kubeedge-mapper')\n\n@hookimpl\ndef kubeedge_register_drivers():\n    return []\n",
    ),
    "kubeedge-mapper-liar": (
        "kubeedge_mapper_liar",
        "kubeedge.mappers",
        "liar",
        GOOD_DRIVER.format(cls="Liar", protocol="truth"),
    ),
    "kubeedge-hello": (
        "kubeedge_hello",
        "kubeedge.cli",
        "hello",
        "import click\nfrom kubeedge import hookimpl\n\n@click.command()\ndef hello():\n    '''Say hello.'''\n    click.echo('hello from a plugin')\n\n"
        "@hookimpl\ndef kubeedge_register_commands(cli):\n    cli.add_command(hello)\n",
    ),
    "kubeedge-edge-audit": (
        "kubeedge_edge_audit",
        "kubeedge.edge_modules",
        "audit",
        AUDIT_MODULE,
    ),
    "kubeedge-badcli": (
        "kubeedge_badcli",
        "kubeedge.cli",
        "badcli",
        "raise RuntimeError('boom at import')\n",
    ),
}


def write_distribution(root: Path, dist: str, package: str, group: str, name: str, source: str) -> Path:
    folder = root / dist
    (folder / "src" / package).mkdir(parents=True)
    (folder / "src" / package / "__init__.py").write_text("")
    (folder / "src" / package / "plugin.py").write_text(source)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(f'''
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"

        [project]
        name = "{dist}"
        version = "0.3.0"
        dependencies = ["kubeedge-core"]

        [project.entry-points."{group}"]
        {name} = "{package}.plugin"

        [tool.hatch.build.targets.wheel]
        packages = ["src/{package}"]
    ''')
    )
    return folder


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv over this environment's packages, with the throwaway distributions built and
    installed into its own site-packages by a real pip."""
    root = tmp_path_factory.mktemp("plugins")
    python = overlay_venv(root / "venv")
    pip_install(python, *(write_distribution(root, dist, *spec) for dist, spec in DISTRIBUTIONS.items()))
    return root / "venv"


def run(venv: Path, tmp_path: Path, *args: str, config: str | None = None) -> tuple[int, str, list[str]]:
    log = tmp_path / "imports.log"
    log.write_text("")
    command = [str(venv / "bin" / "python"), "-m", "kubeedge", *args]
    if config is not None:
        (tmp_path / "edge.yaml").write_text(config)
        command += ["--config", str(tmp_path / "edge.yaml")]
    env = {**os.environ, "IMPORT_LOG": str(log), "COLUMNS": "250"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    return result.returncode, result.stdout + result.stderr, log.read_text().split()


def row(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line.split() and line.split()[0] == name)


def test_installed_mappers_are_listed_without_being_imported(venv: Path, tmp_path: Path) -> None:
    code, output, imported = run(venv, tmp_path, "mapper", "list")
    assert code == 0, output
    acme = row(output, "acme")
    assert "kubeedge-mapper-acme" in acme and "0.3.0" in acme and " no " in acme and "not loaded" in acme
    assert imported == []  # nothing enabled, nothing imported


def test_enabled_mapper_is_imported_and_registered(venv: Path, tmp_path: Path) -> None:
    code, output, imported = run(
        venv, tmp_path, "mapper", "list", config="node: edge-1\nmappers:\n  acme: {}\n"
    )
    assert code == 0, output
    assert " yes " in row(output, "acme") and "loaded" in row(output, "acme")
    assert imported == ["kubeedge_mapper_acme.plugin"]


def test_enabled_but_not_installed_lists_what_is_installed(venv: Path, tmp_path: Path) -> None:
    code, output, _ = run(venv, tmp_path, "mapper", "list", config="mappers:\n  ghost: {}\n  acme: {}\n")
    assert code == 1
    assert "mapper 'ghost' is enabled in the configuration but not installed" in output
    installed = output.split("installed mappers: ", 1)[1].split(")", 1)[0].split(", ")
    assert {"acme", "broken", "dup", "liar", "nohooks"} <= set(installed)
    assert installed == sorted(installed)
    assert "loaded" in row(output, "acme")  # the others are not hidden


def test_import_failure_names_the_plugin_and_hides_nothing(venv: Path, tmp_path: Path) -> None:
    code, output, imported = run(
        venv, tmp_path, "mapper", "list", config="mappers:\n  broken: {}\n  acme: {}\n"
    )
    assert code == 1
    assert (
        "mapper 'broken' (kubeedge-mapper-broken 0.3.0) failed to import kubeedge_mapper_broken.plugin"
        in output
    )
    assert "ModuleNotFoundError" in output
    assert imported == ["kubeedge_mapper_acme.plugin"]


def test_duplicate_names_are_reported_never_dropped(venv: Path, tmp_path: Path) -> None:
    code, output, _ = run(venv, tmp_path, "mapper", "list")
    assert code == 0  # not enabled: a warning in the listing
    assert "provided by more than one installed distribution" in output
    assert "kubeedge-mapper-dup-a" in output and "kubeedge-mapper-dup-b" in output
    code, output, imported = run(venv, tmp_path, "mapper", "list", config="mappers:\n  dup: {}\n")
    assert code == 1
    assert imported == []


def test_a_plugin_with_another_projects_marker_is_refused(venv: Path, tmp_path: Path) -> None:
    code, output, _ = run(venv, tmp_path, "mapper", "list", config="mappers:\n  nohooks: {}\n")
    assert code == 1
    assert "implements no kubeedge hook" in output


def test_a_mapper_must_register_its_own_protocol(venv: Path, tmp_path: Path) -> None:
    code, output, _ = run(venv, tmp_path, "mapper", "list", config="mappers:\n  liar: {}\n")
    assert code == 1
    assert "registers no driver for protocol 'liar' (it registered: truth)" in output


def test_command_plugins_add_commands_and_a_broken_one_is_named(venv: Path, tmp_path: Path) -> None:
    code, output, _ = run(venv, tmp_path, "hello")
    assert code == 0, output
    assert "hello from a plugin" in output
    assert "command plugin 'badcli' (kubeedge-badcli 0.3.0) failed to import" in output
    code, output, _ = run(venv, tmp_path, "--help")
    assert "hello" in output and "Say hello." in output


def test_bad_config_names_the_key(venv: Path, tmp_path: Path) -> None:
    code, output, _ = run(
        venv, tmp_path, "mapper", "list", config="node: Bad_Name\nbus:\n  url: http://x\n  colour: blue\n"
    )
    assert code == 1
    assert "edge.yaml: node: 'Bad_Name' is not a valid node name" in output
    assert "edge.yaml: bus.url: must be 'embedded' or mqtt://host[:port]" in output
    assert "edge.yaml: bus.colour: unknown key" in output


def run_edge_until(
    venv: Path, tmp_path: Path, config: str, done: Callable[[], bool]
) -> tuple[str, list[str]]:
    """Run ``kubeedge edge run`` until ``done()`` (or 30 s), stop it with SIGINT; its output and imports."""
    log = tmp_path / "imports.log"
    log.write_text("")
    (tmp_path / "edge.yaml").write_text(config)
    edge = subprocess.Popen(
        [str(venv / "bin" / "python"), "-m", "kubeedge", "edge", "run", "-c", str(tmp_path / "edge.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "IMPORT_LOG": str(log)},
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not done() and edge.poll() is None:
            time.sleep(0.2)
    finally:
        edge.send_signal(signal.SIGINT)
        output = edge.communicate(timeout=20)[0].decode()
    assert edge.returncode == 0, output
    return output, log.read_text().split()


ACME_DEVICE = """
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: meter, namespace: default}
spec:
  protocol: acme
  properties:
    - {name: temperature, type: INT, accessMode: ReadOnly, visitors: {protocolName: acme, configData: {}}}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: meter-1, namespace: default}
spec:
  deviceModelRef: {name: meter}
  protocol: {protocolName: acme}
  properties:
    - {name: temperature, collectCycle: 100}
"""


def test_a_third_party_edge_module_runs_in_the_edge_when_enabled(venv: Path, tmp_path: Path) -> None:
    from kubeedge.bus import free_port

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    # Served by this venv's acme mapper (reads 1): kubeedge-core alone brings no mapper.
    (manifests / "acme.yaml").write_text(ACME_DEVICE)
    audit = tmp_path / "audit.log"
    base = (
        f"node: edge-1\nbus: {{listen: '127.0.0.1:{free_port()}'}}\ndataDir: data\n"
        "manifests: manifests\nmappers: {acme: {}}\n"
    )
    twins = tmp_path / "data" / "twins.db"

    # Disabled: never imported; the edge serves without it.
    _, imported = run_edge_until(
        venv, tmp_path, base + "modules: {audit: {enabled: false}}\n", lambda: twins.exists()
    )
    assert "kubeedge_edge_audit.plugin" not in imported
    assert twins.exists()

    # A bad setting names the module's key, and the edge does not start.
    code, output, _ = run(venv, tmp_path, "edge", "run", config=base + "modules: {audit: {}}\n")
    assert code == 1
    assert "modules.audit.path: Field required" in output, output

    # Enabled: imported, started with its settings, sees the twins change. From an empty twin
    # database: the acme mapper always reads 1, and a twin document goes out on a change.
    shutil.rmtree(tmp_path / "data")
    output, imported = run_edge_until(
        venv,
        tmp_path,
        base + f"modules: {{audit: {{path: '{audit}'}}}}\n",
        lambda: audit.exists() and "temperature" in audit.read_text(),
    )
    assert "kubeedge_edge_audit.plugin" in imported
    assert audit.exists() and "temperature" in audit.read_text(), output
