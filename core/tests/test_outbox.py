"""The edge's outbox (SQLite on disk) and the store of objects from the cloud, on their own."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kubeedge.edge.objectstore import ObjectStore, StoredObject
from kubeedge.edge.outbox import Entry, Outbox


def _outbox(path: Path, max_bytes: int = 1 << 20) -> Outbox:
    box = Outbox(path / "outbox.db", max_bytes)
    box.open()
    return box


def _entry(device: str, name: str, value: str) -> Entry:
    return Entry(device, name, value.encode())


def test_newest_value_per_property_wins(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    box.put([_entry("ns/a", "t", "1"), _entry("ns/a", "h", "x")])
    box.put([_entry("ns/a", "t", "2")])
    box.put([_entry("ns/a", "t", "3"), _entry("ns/b", "t", "9")])
    assert [(e.device, e.name, e.body) for e in box.pending()] == [
        ("ns/a", "h", b"x"),
        ("ns/a", "t", b"3"),
        ("ns/b", "t", b"9"),
    ]
    assert box.stats.entries == 3


def test_entries_leave_only_when_acked(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    box.put([_entry("ns/a", "t", "1"), _entry("ns/a", "", '{"state":"online"}')])
    taken = box.take("m1", 1 << 20, now_ms=0)
    assert len(taken.entries) == 2
    assert box.take("m2", 1 << 20, now_ms=0).entries == []  # sent, not acked: not sent twice
    assert box.stats.entries == 2
    assert box.acked("m1") == 2
    assert box.pending() == []
    assert box.stats.entries == 0 and box.stats.bytes == 0
    assert box.known_bodies() == {("ns/a", "t"): b"1", ("ns/a", ""): b'{"state":"online"}'}


def test_unacked_entries_are_sent_again_and_never_behind_a_newer_value(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    box.put([_entry("ns/a", "t", "1")])
    assert [e.body for e in box.take("m1", 1 << 20, 0).entries] == [b"1"]
    box.put([_entry("ns/a", "t", "2")])  # the sent one stays (it may be acked), the new one follows
    assert [e.body for e in box.take("m2", 1 << 20, 0).entries] == [b"2"]
    box.unsend()  # the link went down before either ack: only the newest goes again
    assert [e.body for e in box.take("m3", 1 << 20, 0).entries] == [b"2"]
    assert box.acked("m1") == 0  # a late ack of a message sent again is harmless


def test_an_ack_also_removes_older_entries_of_the_property(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    box.put([_entry("ns/a", "t", "1")])
    box.take("m1", 1 << 20, 0)
    box.put([_entry("ns/a", "t", "2")])
    box.take("m2", 1 << 20, 0)
    assert box.acked("m2") == 1  # the cloud has 2: 1 must never be sent after it
    box.unsend()
    assert box.pending() == []


def test_bound_drops_oldest_first_and_counts_across_a_restart(tmp_path: Path) -> None:
    size = Entry("ns/d", "p00", b"v" * 100).size
    box = _outbox(tmp_path, max_bytes=size * 5)
    for i in range(8):
        box.put([Entry("ns/d", f"p{i:02}", b"v" * 100)])
    assert [e.name for e in box.pending()] == ["p03", "p04", "p05", "p06", "p07"]
    assert box.stats.dropped_entries == 3
    assert box.stats.dropped_bytes == 3 * size
    assert box.stats.bytes <= box.max_bytes
    box.close()
    again = _outbox(tmp_path, max_bytes=size * 5)
    assert again.stats.dropped_entries == 3
    assert again.stats.entries == 5 and again.stats.bytes == 5 * size


def test_survives_a_restart_with_sent_entries_unsent(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    box.put([_entry("ns/a", "t", "1"), _entry("ns/a", "u", "5")])
    box.take("m1", 1 << 20, 0)
    box.put([_entry("ns/a", "t", "2")])
    box.close()  # as if the process died: nothing was acked
    again = _outbox(tmp_path)
    assert [(e.name, e.body) for e in again.take("m2", 1 << 20, 0).entries] == [("u", b"5"), ("t", b"2")]


def test_take_respects_the_message_size_and_the_due_time(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    box.put([Entry("ns/a", f"p{i}", b"x" * 100) for i in range(10)])
    box.put([Entry("ns/a", "later", b"y", due_ms=5000)])
    one = Entry("ns/a", "p0", b"x" * 100).size
    taken = box.take("m1", one * 3, now_ms=1000)
    assert [e.name for e in taken.entries] == ["p0", "p1", "p2"]
    assert taken.next_due_ms == 5000
    rest = box.take("m2", 1 << 20, now_ms=1000)
    assert "later" not in [e.name for e in rest.entries]
    assert [e.name for e in box.take("m3", 1 << 20, now_ms=5000).entries] == ["later"]


def test_refused_entries_are_dropped_and_counted(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    box.put([_entry("other/dev", "t", "1")])
    box.take("m1", 1 << 20, 0)
    assert box.refused("m1") == 1
    assert box.pending() == [] and box.stats.refused_entries == 1


operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y"])),
        st.tuples(st.just("take"), st.just(""), st.just("")),
        st.tuples(st.just("ack"), st.just(""), st.just("")),
        st.tuples(st.just("lost_ack"), st.just(""), st.just("")),
        st.tuples(st.just("unsend"), st.just(""), st.just("")),
        st.tuples(st.just("restart"), st.just(""), st.just("")),
    ),
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(operations)
@example(  # a lost ack, then a newer value acked: the old one must not come back after it
    [
        ("put", "a", "x"),
        ("take", "", ""),
        ("put", "a", "x"),
        ("take", "", ""),
        ("lost_ack", "", ""),
        ("ack", "", ""),
    ]
)
def test_the_cloud_sees_each_property_in_order_and_ends_with_the_newest(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, str, str]]
) -> None:
    """Whatever the order of puts, sends, acks, lost acks, lost links and restarts: per property
    the values the cloud stores only go forward, and once everything is acked the cloud has the newest value."""
    path = tmp_path_factory.mktemp("outbox")
    box = _outbox(path)
    counter = 0
    newest: dict[tuple[str, str], int] = {}
    cloud: dict[tuple[str, str], int] = {}
    sent: list[str] = []

    def ack(message: str, lost: bool = False) -> None:
        for entry in in_flight.pop(message, []):
            item = (entry.device, entry.name)
            value = int(entry.body)
            assert value >= cloud.get(item, -1), f"{item}: {value} after {cloud.get(item)}"  # again is fine
            cloud[item] = value
        if not lost:  # else the cloud stored it but its ack never reached the edge
            box.acked(message)

    in_flight: dict[str, list[Entry]] = {}
    for op, device, name in ops:
        if op == "put":
            counter += 1
            newest[(device, name)] = counter
            box.put([Entry(device, name, str(counter).encode())])
        elif op == "take":
            message = f"m{len(sent)}"
            sent.append(message)
            in_flight[message] = box.take(message, 1 << 20, 0).entries
        elif op == "ack" and in_flight:
            ack(next(iter(in_flight)))  # the cloud answers in order
        elif op == "lost_ack" and in_flight:
            ack(next(iter(in_flight)), lost=True)
        elif op == "unsend":
            box.unsend()
            in_flight.clear()
        elif op == "restart":
            box.close()
            box = _outbox(path)
            in_flight.clear()
    box.unsend()
    in_flight.clear()
    while True:
        message = f"final{len(sent)}"
        sent.append(message)
        in_flight[message] = box.take(message, 1 << 20, 0).entries
        if not in_flight[message]:
            break
        ack(message)
    assert cloud == newest
    box.close()


def test_object_store_keeps_objects_and_versions_across_a_restart(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects.db")
    store.open()
    assert not store.ever_synced()
    store.apply(
        [StoredObject("device/ns/a", "1", b'{"a":1}'), StoredObject("devicemodel/ns/m", "7", b"{}")], []
    )
    store.apply([StoredObject("device/ns/a", "2", b'{"a":2}')], ["devicemodel/ns/m"], synced=True)
    store.close()
    again = ObjectStore(tmp_path / "objects.db")
    again.open()
    assert again.load() == [StoredObject("device/ns/a", "2", b'{"a":2}')]
    assert again.ever_synced()


def test_the_priority_lane_takes_only_urgent_entries_and_a_replaced_urgent_entry_stays_urgent(
    tmp_path: Path,
) -> None:
    box = _outbox(tmp_path)
    box.put([_entry("ns/a", "t", "1"), Entry("ns/a", "s", b"25", due_ms=10**15, urgent=True)])
    # an answer to a desired value is not held by its reportCycle
    assert [e.body for e in box.take("p1", 1 << 20, 0, "priority").entries] == [b"25"]
    box.put([Entry("ns/b", "s", b"7", urgent=True)])
    box.put([Entry("ns/b", "s", b"8")])  # a newer value of it, unsent: it carries the answer too
    assert [e.body for e in box.take("t1", 1 << 20, 0, "telemetry").entries] == [b"1"]
    assert [(e.body, e.urgent) for e in box.take("p2", 1 << 20, 0, "priority").entries] == [(b"8", True)]


def test_a_message_sent_again_never_follows_a_newer_value_sent_in_the_other_lane(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    box.put([_entry("ns/a", "t", "1"), _entry("ns/a", "h", "x")])
    assert len(box.take("t1", 1 << 20, 0, "telemetry").entries) == 2
    box.put([Entry("ns/a", "t", b"2", urgent=True)])
    assert [e.body for e in box.take("p1", 1 << 20, 0, "priority").entries] == [b"2"]
    box.unsend("t1")  # its ack did not come: only it is sent again, without the older value
    assert [e.body for e in box.take("t2", 1 << 20, 0, "telemetry").entries] == [b"x"]
    assert box.acked("p1") == 1


def test_an_outbox_from_before_the_priority_lane_opens_with_its_entries(tmp_path: Path) -> None:
    import sqlite3

    old = sqlite3.connect(tmp_path / "outbox.db")
    old.executescript(
        "CREATE TABLE entries (seq INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, "
        "name TEXT NOT NULL, body BLOB NOT NULL, size INTEGER NOT NULL, due_ms INTEGER NOT NULL "
        "DEFAULT 0, sent_in TEXT);"
        "INSERT INTO entries (device, name, body, size) VALUES ('ns/a', 't', X'31', 70);"
    )
    old.close()
    box = _outbox(tmp_path)
    assert [(e.body, e.urgent) for e in box.pending()] == [(b"1", False)]
    box.put([Entry("ns/a", "s", b"5", urgent=True)])
    assert [e.body for e in box.take("p1", 1 << 20, 0, "priority").entries] == [b"5"]


lane_operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(["a", "b"]), st.sampled_from(["x", "y"]), st.booleans()),
        st.tuples(st.just("take"), st.sampled_from(["telemetry", "priority"]), st.just(""), st.just(False)),
        st.tuples(st.just("ack"), st.sampled_from(["0", "1"]), st.just(""), st.just(False)),
        st.tuples(st.just("again"), st.sampled_from(["0", "1"]), st.just(""), st.just(False)),
        st.tuples(st.just("drop_link"), st.just(""), st.just(""), st.just(False)),
        st.tuples(st.just("restart"), st.just(""), st.just(""), st.just(False)),
    ),
    max_size=50,
)


@settings(max_examples=150, deadline=None)
@given(lane_operations)
@example(  # telemetry in flight, a newer urgent value sent past it, then the telemetry sent again
    [
        ("put", "a", "x", False),
        ("take", "telemetry", "", False),
        ("put", "a", "x", True),
        ("take", "priority", "", False),
        ("again", "0", "", False),
        ("take", "telemetry", "", False),
        ("ack", "1", "", False),
    ]
)
def test_two_lanes_keep_each_property_in_order_and_lose_nothing(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, str, str, bool]]
) -> None:
    """A telemetry lane and a priority lane in flight at once, acked in any order, messages sent
    again one at a time (an ack timeout, a 503), lost links and restarts: the cloud, which stores
    what it receives in the order it was sent down the one connection, sees each property's
    values only go forward, and once everything is acked it has the newest value."""
    path = tmp_path_factory.mktemp("outbox")
    box = _outbox(path)
    counter = 0
    newest: dict[tuple[str, str], int] = {}
    cloud: dict[tuple[str, str], int] = {}
    in_flight: dict[str, str] = {}  # message -> lane
    sent = 0

    def send(lane: str) -> str:
        nonlocal sent
        sent += 1
        message = f"m{sent}"
        for entry in box.take(message, 1 << 20, 0, lane).entries:  # type: ignore[arg-type]
            item = (entry.device, entry.name)
            value = int(entry.body)
            assert value >= cloud.get(item, -1), f"{item}: {value} after {cloud.get(item)}"
            cloud[item] = value
        return message

    for op, a, b, urgent in ops:
        if op == "put":
            counter += 1
            newest[(a, b)] = counter
            box.put([Entry(a, b, str(counter).encode(), urgent=urgent)])
        elif op == "take" and a not in in_flight.values():
            in_flight[send(a)] = a
        elif op in ("ack", "again") and in_flight:
            messages = sorted(in_flight)
            message = messages[int(a) % len(messages)]
            del in_flight[message]
            if op == "ack":
                box.acked(message)
            else:
                box.unsend(message)
        elif op == "drop_link":
            box.unsend()
            in_flight.clear()
        elif op == "restart":
            box.close()
            box = _outbox(path)
            in_flight.clear()
    box.unsend()
    while True:
        message = send("all")
        if not box.acked(message):
            break
    assert {item: cloud.get(item) for item in newest} == newest
    box.close()
