"""The standalone-source and assignment-protocol fuzzers (hack/fuzz_manifests.py) against a
running in-process edge, for a fixed budget of examples.

Invariants after every example: the edge's folder watch and its mapper's assignment consumer are
alive, a canary device in another file is served and its twin answered, the mapper still applies
the edge's real snapshot, every refused file is named in the source's problems, RSS is bounded.
The canary may take 5 s here (the test machines' cores are shared); the long form
(``python hack/fuzz_manifests.py --minutes N``) holds it to 1 s.
"""

import fuzz_manifests  # hack/fuzz_manifests.py (hack/ is on pytest's pythonpath)
import pytest

EXAMPLES = 100


@pytest.mark.parametrize("target", ["standalone", "assignments"])
def test_fuzz_target_against_a_running_edge(target: str) -> None:
    with fuzz_manifests.fuzz_session((target,), EXAMPLES, fuzz_manifests.Limits(canary_timeout=5.0)) as tests:
        tests[target]()
