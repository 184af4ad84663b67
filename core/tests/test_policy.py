"""The report policy every mapper applies: on change, deadband, minimum and maximum interval."""

from kubeedge.mapper.policy import ReportPolicy, ReportState, cycle_ms


def state(**policy) -> ReportState:
    return ReportState(ReportPolicy.model_validate(policy), max_interval_s=10.0)


def test_first_value_and_changes_are_reported() -> None:
    s = state()
    assert s.should_report(1, "1", 0.0)
    s.reported(1, "1", 0.0)
    assert not s.should_report(1, "1", 1.0)
    assert s.should_report(2, "2", 1.0)


def test_unchanged_values_are_repeated_at_the_maximum_interval() -> None:
    s = state()
    s.reported(1, "1", 0.0)
    assert not s.should_report(1, "1", 9.9)
    assert s.should_report(1, "1", 10.0)
    assert state(maxInterval=2000).policy.max_interval == 2000


def test_absolute_and_percent_deadbands() -> None:
    s = state(deadband=0.5)
    s.reported(20.0, "20", 0.0)
    assert not s.should_report(20.4, "20.4", 1.0)
    assert s.should_report(20.6, "20.6", 1.0)
    p = state(deadbandPercent=10)
    p.reported(200.0, "200", 0.0)
    assert not p.should_report(219.0, "219", 1.0)
    assert p.should_report(221.0, "221", 1.0)


def test_minimum_interval_holds_back_changes() -> None:
    s = state(minInterval=1000)
    s.reported(1, "1", 0.0)
    assert not s.should_report(2, "2", 0.5)
    assert s.should_report(2, "2", 1.0)


def test_on_change_off_reports_only_at_the_maximum_interval() -> None:
    s = state(onChange=False)
    s.reported(1, "1", 0.0)
    assert not s.should_report(5, "5", 1.0)
    assert s.should_report(5, "5", 10.0)


def test_text_and_booleans_compare_exactly() -> None:
    s = state(deadband=100)
    s.reported("a", "a", 0.0)
    assert s.should_report("b", "b", 1.0)
    b = state(deadband=5)
    b.reported(True, "true", 0.0)
    assert b.should_report(False, "false", 1.0)


def test_kubeedge_cycle_rule() -> None:
    assert cycle_ms(0) == 1000
    assert cycle_ms(None) == 1000
    assert cycle_ms(250) == 250
