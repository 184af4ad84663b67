"""BACnet configData: what is accepted, how it is normalised, and errors that name the field."""

import pytest
from pydantic import ValidationError

from kubeedge_mapper_bacnet.config import BacnetConfig, BacnetVisitor, bacnet_address, host_port


def error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in error["loc"]) for error in exc.errors()}


def test_a_device_needs_only_its_instance_and_address() -> None:
    config = BacnetConfig.model_validate({"deviceInstance": 1001, "address": "10.0.0.5"})
    assert config.device_endpoint() == ("10.0.0.5", 47808)
    assert config.local_endpoint() == ("0.0.0.0", 47808)
    assert (config.apdu_timeout, config.apdu_retries, config.read_multiple) == (3000, 1, True)
    assert config.bbmd_address is None


@pytest.mark.parametrize(
    ("config", "field", "text"),
    [
        ({"address": "10.0.0.5"}, "deviceInstance", "Field required"),
        ({"deviceInstance": 4194303, "address": "10.0.0.5"}, "deviceInstance", "less than or equal"),
        ({"deviceInstance": 1, "address": "plc.local"}, "address", "not an IPv4 address"),
        ({"deviceInstance": 1, "address": "10.0.0.5:70000"}, "address", "not 1-65535"),
        ({"deviceInstance": 1, "address": "10.0.0.5", "localAddress": "x:1"}, "localAddress", "IPv4"),
        ({"deviceInstance": 1, "address": "10.0.0.5", "bbmdAddress": "10.0.0"}, "bbmdAddress", "IPv4"),
        ({"deviceInstance": 1, "address": "10.0.0.5", "apduTimeout": 0}, "apduTimeout", "greater than"),
        ({"deviceInstance": 1, "address": "10.0.0.5", "apduRetries": 11}, "apduRetries", "less than"),
        ({"deviceInstance": 1, "address": "10.0.0.5", "timeout": 5}, "timeout", "Extra inputs"),
    ],
)
def test_bad_protocol_config_names_the_field(config: dict, field: str, text: str) -> None:
    with pytest.raises(ValidationError) as info:
        BacnetConfig.model_validate(config)
    assert field in error_fields(info.value)
    assert text in str(info.value)


def test_a_loopback_device_on_the_mappers_own_port_is_refused() -> None:
    # bacpypes3 0.0.110 answers a request to 127.x on its own port itself: it would never leave.
    with pytest.raises(ValidationError, match=r"localAddress .* another port"):
        BacnetConfig.model_validate(
            {"deviceInstance": 1, "address": "127.0.0.2:47808", "localAddress": "127.0.0.1:47808"}
        )
    BacnetConfig.model_validate(
        {"deviceInstance": 1, "address": "127.0.0.2:47808", "localAddress": "127.0.0.1:47809"}
    )


def test_object_types_and_properties_are_bacnets_names_in_either_spelling() -> None:
    visitor = BacnetVisitor.model_validate(
        {"objectType": "analogValue", "objectInstance": 3, "property": "priorityArray", "arrayIndex": 8}
    )
    assert (visitor.object_type, visitor.property) == ("analog-value", "priority-array")
    assert visitor.describe() == "analog-value,3 priority-array[8]"
    default = BacnetVisitor.model_validate({"objectType": "binary-output", "objectInstance": 0})
    assert default.property == "present-value"
    assert default.priority is None


@pytest.mark.parametrize(
    ("visitor", "field", "text"),
    [
        ({"objectType": "analogValu", "objectInstance": 1}, "objectType", "not a BACnet object type"),
        ({"objectType": "analogValue"}, "objectInstance", "Field required"),
        (
            {"objectType": "analogValue", "objectInstance": 1, "property": "presentVal"},
            "property",
            "identifier",
        ),
        ({"objectType": "analogValue", "objectInstance": 1, "priority": 0}, "priority", "greater than"),
        ({"objectType": "analogValue", "objectInstance": 1, "priority": 17}, "priority", "less than"),
        ({"objectType": "analogValue", "objectInstance": 1, "scale": 0}, "scale", "must not be 0"),
        ({"objectType": "analogValue", "objectInstance": 1, "covLifetme": 5}, "covLifetme", "Extra inputs"),
    ],
)
def test_bad_visitor_names_the_field(visitor: dict, field: str, text: str) -> None:
    with pytest.raises(ValidationError) as info:
        BacnetVisitor.model_validate(visitor)
    assert field in error_fields(info.value)
    assert text in str(info.value)


def test_cov_is_for_what_notifications_carry_and_renews_before_it_lapses() -> None:
    visitor = BacnetVisitor.model_validate({"objectType": "analogInput", "objectInstance": 1, "cov": True})
    assert (visitor.cov_lifetime, visitor.renewal(), visitor.cov_confirmed) == (300, 150.0, True)
    with pytest.raises(ValidationError, match=r"cov: .* not object-name"):
        BacnetVisitor.model_validate(
            {"objectType": "analogInput", "objectInstance": 1, "property": "objectName", "cov": True}
        )
    with pytest.raises(ValidationError, match="covRenewal 60 s must be shorter than covLifetime 60"):
        BacnetVisitor.model_validate(
            {
                "objectType": "analogInput",
                "objectInstance": 1,
                "cov": True,
                "covLifetime": 60,
                "covRenewal": 60,
            }
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10.0.0.5", ("10.0.0.5", 47808)), ("10.0.0.5:47809", ("10.0.0.5", 47809))],
)
def test_host_port(text: str, expected: tuple[str, int]) -> None:
    assert host_port(text) == expected


def test_a_model_can_give_its_devices_a_port() -> None:
    config = BacnetConfig.model_validate({"deviceInstance": 1, "address": "10.0.0.5", "port": 47900})
    assert config.device_endpoint() == ("10.0.0.5", 47900)
    with pytest.raises(ValidationError, match="port 47900 contradicts the port in address"):
        BacnetConfig.model_validate({"deviceInstance": 1, "address": "10.0.0.5:47808", "port": 47900})


def test_a_local_address_may_carry_its_subnet_for_broadcasts() -> None:
    config = BacnetConfig.model_validate(
        {"deviceInstance": 1, "address": "10.0.0.5", "localAddress": "10.0.0.2/24"}
    )
    assert config.local_endpoint() == ("10.0.0.2", 47808)
    assert bacnet_address(config.local_address) == "10.0.0.2/24:47808"
    assert bacnet_address("10.0.0.2:47809") == "10.0.0.2:47809"
    with pytest.raises(ValidationError, match="subnet prefix '33' is not 0-32"):
        BacnetConfig.model_validate(
            {"deviceInstance": 1, "address": "10.0.0.5", "localAddress": "10.0.0.2/33"}
        )
