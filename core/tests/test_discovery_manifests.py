"""kubeedge.discovery: found devices as manifests with names a user keeps (protocol-neutral)."""

from kubeedge import FoundDevice, FoundModel, FoundProperty, manifest_name
from kubeedge.api.manifests import parse_documents
from kubeedge.api.validation import validate_documents
from kubeedge.discovery import to_manifests


def test_names_are_valid_object_names_a_person_would_keep() -> None:
    assert manifest_name("Living Room Lamp") == "living-room-lamp"
    assert manifest_name("0x00158d0001a2b3c4") == "0x00158d0001a2b3c4"
    assert manifest_name("IKEA/LED1545G12 (E27)") == "ikea-led1545g12-e27"
    assert manifest_name("___") == "device"
    assert len(manifest_name("x" * 100)) == 63


def test_one_model_per_kind_unique_names_and_valid_manifests() -> None:
    import yaml

    sensor = FoundModel(
        "ACME TH-1",
        (
            FoundProperty("temperature", "FLOAT", {"point": "t"}, unit="°C"),
            FoundProperty("setpoint", "INT", writable=True, minimum="5", maximum="30"),
        ),
        {"mode": "x"},
        description="a thermometer",
    )
    other = FoundModel("ACME TH-1", (FoundProperty("humidity", "FLOAT"),))
    found = [
        FoundDevice("Kitchen", sensor, {"address": 1}, source="bus#1"),
        FoundDevice("kitchen", sensor, {"address": 2}),
        FoundDevice("Hall", other, {"address": 3}),
    ]
    documents = to_manifests(found, "acme", "plant")
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("DeviceModel", "acme-th-1"),
        ("DeviceModel", "acme-th-1-2"),
        ("Device", "kitchen"),
        ("Device", "kitchen-2"),
        ("Device", "hall"),
    ]
    model = documents[0]
    assert model["spec"]["protocolConfigData"] == {"mode": "x"}
    assert model["spec"]["properties"][0]["visitors"] == {
        "protocolName": "acme",
        "configData": {"point": "t"},
    }
    assert model["spec"]["properties"][1]["accessMode"] == "ReadWrite"
    assert documents[2]["metadata"]["annotations"] == {"kubeedge.io/discovered-at": "bus#1"}
    parsed, problems = parse_documents("<test>", yaml.safe_dump_all(documents, allow_unicode=True))
    report = validate_documents(parsed)
    assert not problems and report.ok, report.all_problems
