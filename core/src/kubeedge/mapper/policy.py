"""When a read value is reported: one policy, the same in every mapper.

Set per property with a ``report`` key in its visitor ``configData`` (so a DeviceModel can set it
for all its devices); every key is optional::

    visitors:
      configData:
        register: HoldingRegister
        report: {deadband: 0.5, minInterval: 2000, maxInterval: 60000}

* a value is reported when it changes (``onChange``, default true) by more than the deadband
  (``deadband`` absolute, ``deadbandPercent`` of the last reported value; text compared exactly);
* changes are reported at most every ``minInterval`` ms (default 0);
* an unchanged value is reported again every ``maxInterval`` ms (default: the property's
  ``reportCycle``, else its ``collectCycle``, 0 meaning 1000 as in KubeEdge).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kubeedge.api.values import Value

REPORT_KEY = "report"
DEFAULT_CYCLE_MS = 1000


class ReportPolicy(BaseModel):
    # frozen: properties without a policy of their own share one instance
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    on_change: bool = True
    deadband: float | None = Field(default=None, ge=0)
    deadband_percent: float | None = Field(default=None, ge=0)
    min_interval: int = Field(default=0, ge=0)
    max_interval: int | None = Field(default=None, ge=0)


def cycle_ms(value: int | None) -> int:
    """KubeEdge's rule: a cycle of 0 (or none) means 1 s."""
    return value if value else DEFAULT_CYCLE_MS


@dataclass
class ReportState:
    """What was last reported for one property, to decide about the next value."""

    policy: ReportPolicy
    max_interval_s: float
    value: Value | None = None
    text: str | None = None
    at: float = float("-inf")
    error: str | None = None

    def should_report(self, value: Value, text: str, now: float) -> bool:
        if self.text is None:
            return True
        elapsed = now - self.at
        if elapsed >= self.max_interval_s:
            return True
        if not self.policy.on_change or elapsed * 1000 < self.policy.min_interval:
            return False
        return self._changed(value, text)

    def _changed(self, value: Value, text: str) -> bool:
        last = self.value
        if _is_number(value) and _is_number(last):
            assert isinstance(value, int | float) and isinstance(last, int | float)
            delta = abs(value - last)
            if self.policy.deadband is not None and delta <= self.policy.deadband:
                return False
            if (
                self.policy.deadband_percent is not None
                and delta <= abs(last) * self.policy.deadband_percent / 100
            ):
                return False
            return delta > 0 or text != self.text
        return text != self.text

    def reported(self, value: Value, text: str, now: float) -> None:
        self.value, self.text, self.at = value, text, now
        self.error = None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
