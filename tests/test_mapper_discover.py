"""`kubeedge mapper discover` for protocols that cannot discover: said plainly, exit status 1."""

from click.testing import CliRunner

from kubeedge.cli import cli


def test_a_mapper_without_discovery_and_an_unknown_protocol_are_named() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["mapper", "discover", "virtual"])
    assert result.exit_code == 1
    assert "the virtual mapper (kubeedge-mapper-virtual) has no discovery" in result.output
    result = runner.invoke(cli, ["mapper", "discover", "nosuch"])
    assert result.exit_code == 1
    assert "no mapper for protocol 'nosuch' is installed" in result.output
    result = runner.invoke(cli, ["mapper", "discover", "mqtt", "-O", "broker"])
    assert result.exit_code == 2
    assert "'broker' is not KEY=VALUE" in result.output
