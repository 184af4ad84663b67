"""The conformance suite's driver contract: what an instrumented driver reports, and what a point's
``loose_type`` lets through. (The suite's use of it, end to end, is what hack/mutate_driver.py and
tests/test_mutate_driver.py check.)"""

from collections.abc import Sequence
from typing import Any

import pytest

from kubeedge.api.device import Device, DeviceModel
from kubeedge.driver import Driver, Property
from kubeedge.testing.contract import DriverContract, instrument

COUNT = Property(name="count", type="int", visitor=None)
LEVEL = Property(name="level", type="float", visitor=None)


class TextDriver(Driver[Any, Any]):
    """Reads every value as the device's text, closes badly."""

    protocol = "text-test"

    async def connect(self) -> None:
        pass

    async def read(self, prop: Property[Any]) -> Any:
        return "7"

    async def close(self) -> None:
        raise AttributeError("'TextDriver' object has no attribute '_writer'")


class ShortBatchDriver(TextDriver):
    async def read_many(self, props: Sequence[Property[Any]]) -> list[Any]:
        return [7]


def make(cls: type[Driver[Any, Any]], contract: DriverContract) -> Driver[Any, Any]:
    device = Device.model_validate(
        {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device", "metadata": {"name": "d"}, "spec": {}}
    )
    model = DeviceModel.model_validate(
        {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "DeviceModel",
            "metadata": {"name": "m"},
            "spec": {},
        }
    )
    return instrument(cls, contract)(device, model, None, cls.settings_model())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "value", "ok"),
    [
        ("int", 7, True),
        ("int", "7", False),
        ("int", True, False),
        ("int", 7.0, False),
        ("float", 7, True),
        ("double", 7.5, True),
        ("float", "7.5", False),
        ("boolean", True, True),
        ("boolean", 1, False),
        ("string", "a", True),
        ("string", b"a", False),
        ("bytes", b"a", True),
        ("bytes", bytearray(b"a"), True),
        ("bytes", "YQ==", False),
    ],
)
def test_read_types_are_strict(kind: str, value: Any, ok: bool) -> None:
    contract = DriverContract()
    contract.check_type("Acme.read", Property(name="p", type=kind, visitor=None), value)
    assert (contract.violations == []) == ok, contract.violations


def test_a_wrong_type_is_named_once_with_the_method_and_the_way_out() -> None:
    contract = DriverContract()
    contract.check_type("AcmeDriver.read", COUNT, "7")
    contract.check_type("AcmeDriver.read", COUNT, "8")
    (message,) = contract.violations
    assert "AcmeDriver.read returned '7' (str) for 'count' (int): return an int" in message
    assert "loose_type" in message


def test_loose_type_lets_a_point_through() -> None:
    contract = DriverContract(loose_types={"count": "the library gives text"})
    contract.check_type("AcmeDriver.read", COUNT, "7")
    assert contract.violations == []


async def test_the_instrumented_driver_reports_reads_batches_and_close() -> None:
    contract = DriverContract()
    driver = make(TextDriver, contract)
    assert type(driver).__qualname__ == "TextDriver" and isinstance(driver, TextDriver)
    with pytest.raises(AttributeError):
        await driver.close()  # before any connect
    await driver.connect()
    assert await driver.read_many([COUNT, LEVEL]) == ["7", "7"]  # values unchanged
    assert contract.good_connects == 1 and contract.closes == 1
    assert any(
        "TextDriver.close() raised AttributeError" in v and "after no connect" in v
        for v in contract.violations
    )
    assert any("TextDriver.read returned '7' (str) for 'count'" in v for v in contract.violations)
    assert any("for 'level' (float)" in v for v in contract.violations)

    batch = DriverContract()
    assert await make(ShortBatchDriver, batch).read_many([COUNT, LEVEL]) == [7]
    assert any("read_many returned 1 results for 2 properties (count, level)" in v for v in batch.violations)
