"""The manifest and edge-config fuzzers (hack/fuzz_manifests.py) for a fixed budget of examples.

The long form runs the same targets for as long as asked: ``python hack/fuzz_manifests.py
--minutes N``. Invariants: no exception escapes parse, validate, ``kubeedge validate`` or
``load_config``; every problem names its file and says what is wrong; no message is unbounded.
"""

import fuzz_manifests  # hack/fuzz_manifests.py (hack/ is on pytest's pythonpath)
import pytest

EXAMPLES = 150


@pytest.mark.parametrize("target", ["manifests", "config"])
def test_fuzz_target_for_a_fixed_budget(target: str) -> None:
    with fuzz_manifests.fuzz_session((target,), EXAMPLES, fuzz_manifests.Limits()) as tests:
        tests[target]()
