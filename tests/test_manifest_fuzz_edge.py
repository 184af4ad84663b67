"""The standalone-source and assignment-protocol fuzzers (hack/fuzz_manifests.py) against a
running in-process edge, for a fixed budget of examples.

Invariants after every example: the edge's folder watch and its mapper's assignment consumer are
alive, a canary device in another file is served and its twin answered, the mapper still applies
the edge's real snapshot, every refused file is named in the source's problems, RSS is bounded.
The canary may take 5 s here (the test machines' cores are shared); the long form
(``python hack/fuzz_manifests.py --minutes N``) holds it to 1 s.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

HACK = Path(__file__).resolve().parents[1] / "hack" / "fuzz_manifests.py"
EXAMPLES = 100


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_manifests", HACK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_manifests"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("fuzz_manifests", None)


@pytest.mark.parametrize("target", ["standalone", "assignments"])
def test_fuzz_target_against_a_running_edge(fuzz, target: str) -> None:
    with fuzz.fuzz_session((target,), EXAMPLES, fuzz.Limits(canary_timeout=5.0)) as tests:
        tests[target]()
