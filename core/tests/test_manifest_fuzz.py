"""The manifest and edge-config fuzzers (hack/fuzz_manifests.py) for a fixed budget of examples.

The long form runs the same targets for as long as asked: ``python hack/fuzz_manifests.py
--minutes N``. Invariants: no exception escapes parse, validate, ``kubeedge validate`` or
``load_config``; every problem names its file and says what is wrong; no message is unbounded.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

HACK = Path(__file__).resolve().parents[2] / "hack" / "fuzz_manifests.py"
EXAMPLES = 150


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_manifests", HACK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_manifests"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("fuzz_manifests", None)


@pytest.mark.parametrize("target", ["manifests", "config"])
def test_fuzz_target_for_a_fixed_budget(fuzz, target: str) -> None:
    with fuzz.fuzz_session((target,), EXAMPLES, fuzz.Limits()) as tests:
        tests[target]()
