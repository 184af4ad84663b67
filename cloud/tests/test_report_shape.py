"""The hub validates twin/report content with typed dicts (kubeedge_cloud.hub.reports) for speed;
they must take and refuse exactly what kubeedge.api.channel.ReportContent does, and give the same
data."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kubeedge.api.channel import DeviceReport, ReportContent, TwinStatus
from kubeedge_cloud.hub.reports import REPORT, DeviceChange, TwinChange, read_report, report_changes


def test_the_typed_dicts_have_the_models_fields() -> None:
    assert set(TwinChange.__annotations__) == set(TwinStatus.model_fields)
    assert set(DeviceChange.__annotations__) == set(DeviceReport.model_fields)


values = st.one_of(
    st.none(), st.text(max_size=5), st.integers(-3, 3), st.floats(allow_nan=False), st.booleans()
)
twin = st.dictionaries(
    st.sampled_from(
        ["reported", "reported_at", "observed_desired", "observed_desired_at", "type", "error", "x"]
    ),
    values,
    max_size=4,
)
device = st.dictionaries(
    st.sampled_from(["twins", "state", "last_online_time", "y"]),
    st.one_of(values, st.dictionaries(st.text(max_size=3), twin, max_size=3)),
    max_size=3,
)
content = st.one_of(
    st.dictionaries(
        st.sampled_from(["devices", "priority", "z"]),
        st.one_of(st.booleans(), st.dictionaries(st.text(max_size=3), device, max_size=3)),
    ),
    values,
)


@settings(max_examples=400, deadline=None)
@given(content)
def test_the_hub_takes_and_refuses_what_the_model_does(data: Any) -> None:
    try:
        model = ReportContent.model_validate(data)
    except ValidationError:
        model = None
    try:
        fast = report_changes(data)
    except ValidationError:
        fast = None
    assert (model is None) == (fast is None), data
    if model is not None:
        assert fast == {k: v.model_dump(exclude_unset=True) for k, v in model.devices.items()}
        assert read_report(data)[1] == model.priority


def test_the_same_words_for_a_wrong_type() -> None:
    bad = {"devices": {"a": {"twins": {"p": {"reported": 1}}}}}
    errors = []
    for check in (ReportContent.model_validate, REPORT.validate_python):
        try:
            check(bad)
        except ValidationError as exc:
            errors.append((exc.errors()[0]["loc"], exc.errors()[0]["msg"]))
    assert (
        errors[0]
        == errors[1]
        == (("devices", "a", "twins", "p", "reported"), "Input should be a valid string")
    )
