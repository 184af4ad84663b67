"""Read planning: spans merge into as few blocks as the limits allow, and every span is served."""

from hypothesis import given
from hypothesis import strategies as st

from kubeedge import Span, plan_blocks


def test_neighbours_merge_within_gap_and_limit() -> None:
    spans = [
        ("a", Span("hr", 0, 2)),
        ("b", Span("hr", 2, 1)),
        ("c", Span("hr", 5, 2)),
        ("d", Span("hr", 200, 1)),
        ("e", Span("coil", 0, 1)),
        ("f", Span("coil", 3, 1)),
    ]
    blocks = plan_blocks(spans, lambda space: 125 if space == "hr" else 2000, max_gap=2)
    described = sorted((b.space, b.start, b.count, [i for i, _ in b.items]) for b in blocks)
    assert described == [("coil", 0, 4, ["e", "f"]), ("hr", 0, 7, ["a", "b", "c"]), ("hr", 200, 1, ["d"])]


def test_limit_splits_blocks() -> None:
    spans = [(i, Span("hr", i * 10, 10)) for i in range(30)]  # 300 contiguous registers
    blocks = plan_blocks(spans, lambda _: 125)
    assert [b.count for b in blocks] == [120, 120, 60]


@given(
    spans=st.lists(
        st.tuples(st.sampled_from(["hr", "ir", "coil"]), st.integers(0, 500), st.integers(1, 8)), max_size=60
    ),
    limit=st.integers(8, 200),
    gap=st.integers(0, 20),
)
def test_every_span_is_served_within_the_limits(spans: list, limit: int, gap: int) -> None:
    items = [(i, Span(space, start, count)) for i, (space, start, count) in enumerate(spans)]
    blocks = plan_blocks(items, lambda _: limit, gap)
    served = sorted(i for b in blocks for i, _ in b.items)
    assert served == list(range(len(items)))
    for block in blocks:
        assert block.count <= limit or len(block.items) == 1
        for _, span in block.items:
            assert span.space == block.space
            assert block.start <= span.start and span.end <= block.start + block.count
