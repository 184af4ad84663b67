"""The conformance suite keeps catching broken drivers: hack/mutate_driver.py --quick applies a
fixed subset of its mutants (one per kind of check: a wrong read type, a connect that never fails,
a close() that leaves the connection open, a blocking call, an inverted scale on writes, a missing
lock) to a fresh scaffold's driver and fails if the suite lets one through, or if the unmutated
scaffold fails its own suite. The full check (every mutant, the catch rate) is run by hand."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "hack" / "mutate_driver.py"


@pytest.mark.timeout(600)  # a scaffold's suite run seven times (the unmutated one and six mutants)
def test_the_conformance_suite_catches_the_quick_mutants() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "unmutated scaffold: suite passed" in result.stdout
    assert "caught 6 of 6 mutants (100%)" in result.stdout, result.stdout
    # ... with messages a mapper author can act on (the first line of each failure):
    for words in (
        "MutantDriver.read returned '7' (str) for 'count' (int)",
        "was reported online while it was down",
        "connection(s) open 2s after its Device was removed",
        "MutantDriver.read (kubeedge_mapper_mutant/driver.py",
        "the mapper kept reporting '24.875'",
    ):
        assert words in result.stdout, (words, result.stdout)


def test_every_mutant_still_applies_to_the_template(tmp_path: Path) -> None:
    """A template change that makes a mutant's text disappear must update the mutant, not drop it."""
    from click.testing import CliRunner

    from kubeedge.cli import cli

    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import mutate_driver
    finally:
        sys.path.remove(str(SCRIPT.parent))
    assert len(mutate_driver.MUTANTS) >= 25
    dest = tmp_path
    result = CliRunner().invoke(cli, ["mapper", "new", mutate_driver.NAME, "--dest", str(dest)])
    assert result.exit_code == 0, result.output
    driver = (
        dest / f"kubeedge-mapper-{mutate_driver.NAME}" / "src" / mutate_driver.PACKAGE / "driver.py"
    ).read_text()
    for mutant in mutate_driver.MUTANTS:
        assert mutate_driver.apply(driver, mutant) != driver, mutant.name
