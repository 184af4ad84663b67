"""Offline validation of Device and DeviceModel manifests.

Three layers, each reported with file, document, line, object and field path:

1. the schema (the pydantic models that the CRD schema is generated from);
2. the rules KubeEdge and Kubernetes enforce on one object (DNS-1123 names, unique property
   names, cycles >= 0, enum values) plus a few that save a trip to the device (numeric ranges);
3. rules across objects: a Device's model exists, its properties exist in the model, its visitors
   speak the device's protocol, its desired values fit the model's types and ranges.

The edge's standalone mode loads manifest folders through the same function, so a manifest that
``kubeedge validate`` accepts is exactly one the edge accepts. A fourth layer needs the mapper:
:func:`check_config_data` runs each protocol's typed configData models, given as callables (this
layer sits below the driver contract and the plugin host), where ``kubeedge validate`` finds them.

One object never stops the checking of another: an unexpected failure while checking an object
becomes a problem of that object.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from kubeedge.api.device import (
    API_VERSION,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    GROUP,
    KINDS,
    Device,
    DeviceModel,
    apply_model_defaults,
)
from kubeedge.api.manifests import (
    Document,
    PathPart,
    Problem,
    format_path,
    quote,
    text_of,
)
from kubeedge.api.values import NUMERIC_TWIN_TYPES, check_range, parse_value, twin_type

log = logging.getLogger(__name__)

ManifestObject = Device | DeviceModel
ConfigCheck = Callable[[Device, DeviceModel], Iterable[tuple[tuple[PathPart, ...], str]]]
"""Checks a device (with its model's defaults merged in) against a mapper's configData models;
yields ``(field path, message)`` for each problem."""


@dataclass
class Checked:
    """One object found in the manifests, with what is wrong with it (nothing, if valid)."""

    document: Document
    prefix: tuple[PathPart, ...]
    """Where the object sits in its document: ``()``, or ``("items", 3)`` inside a List."""
    kind: str
    label: str
    """``Device default/meter-1``, the name problems are reported under."""
    key: str = ""
    """``namespace/name`` as written (also when the object does not validate)."""
    obj: ManifestObject | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.obj is not None and not self.problems

    def problem(self, path: Iterable[PathPart], message: str) -> None:
        full = (*self.prefix, *path)
        self.problems.append(
            Problem(
                self.document.source,
                message,
                document=self.document.index,
                line=self.document.line_of(full),
                obj=self.label,
                path=format_path(full) if full else None,
            )
        )


@dataclass
class Report:
    """The outcome of validating a set of manifests."""

    objects: list[Checked] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    """Problems that belong to no single object (unreadable file, YAML syntax)."""
    ignored: list[Checked] = field(default_factory=list)
    """Documents of other kinds, which ``validate`` skips."""

    @property
    def all_problems(self) -> list[Problem]:
        return [*self.problems, *(p for c in self.objects for p in c.problems)]

    @property
    def ok(self) -> bool:
        return not self.all_problems

    def valid(self, kind: type[ManifestObject]) -> list[Any]:
        return [c.obj for c in self.objects if c.valid and isinstance(c.obj, kind)]


def validate_documents(documents: Iterable[Document]) -> Report:
    """Check every Device and DeviceModel in ``documents`` (layers 1 to 3)."""
    report = Report()
    for document in documents:
        for checked in _split(document, report):
            with _isolated(checked):
                _check_schema(checked)
                if checked.obj is not None:
                    _check_object(checked)
            report.objects.append(checked)
    _check_duplicates(report.objects)
    _check_references(report.objects)
    return report


@dataclass(frozen=True)
class Skipped:
    """A protocol whose configData could not be checked, and why."""

    protocol: str
    reason: str
    devices: int

    def __str__(self) -> str:
        return (
            f"protocol {quote(self.protocol)}: {self.reason}; its configData was not checked "
            f"({self.devices} device(s))"
        )


def check_config_data(report: Report, checks: Mapping[str, ConfigCheck | str]) -> list[Skipped]:
    """Layer 4: run each valid device's mapper models on its configData, as the mapper will.

    ``checks`` maps a protocol to its check, or to the reason it has none (``"mapper not
    installed"``). Problems go on the devices, with file, line and field; the protocols left
    unchecked are returned, so the caller can say which checks did not run.
    """
    models = {c.obj.key: c.obj for c in report.objects if c.valid and isinstance(c.obj, DeviceModel)}
    skipped: dict[str, tuple[str, int]] = {}
    for checked in report.objects:
        device = checked.obj
        if not checked.valid or not isinstance(device, Device):
            continue
        model = models.get(f"{device.namespace}/{device.model_name}")
        protocol = device.protocol_name or ""
        check = checks.get(protocol, "mapper not installed")
        if model is None:
            continue
        if isinstance(check, str):
            reason, count = skipped.get(protocol, (check, 0))
            skipped[protocol] = (reason, count + 1)
            continue
        with _isolated(checked):
            for path, message in check(apply_model_defaults(device, model), model):
                checked.problem(path, message)
    return [Skipped(protocol, reason, count) for protocol, (reason, count) in sorted(skipped.items())]


@contextlib.contextmanager
def _isolated(checked: Checked) -> Iterator[None]:
    """An unexpected failure while checking one object becomes that object's problem."""
    try:
        yield
    except Exception as exc:
        log.debug("checking %s failed", checked.label, exc_info=True)
        checked.problem((), f"could not be checked: {type(exc).__name__}: {text_of(str(exc), 200)}")


# --------------------------------------------------------------------------- layer 1: schema


def _split(document: Document, report: Report) -> list[Checked]:
    data = document.data
    if isinstance(data, dict) and data.get("kind") == "List" and isinstance(data.get("items"), list):
        items: list[tuple[tuple[PathPart, ...], Any]] = [
            (("items", i), item) for i, item in enumerate(data["items"])
        ]
    else:
        items = [((), data)]
    found = []
    for prefix, item in items:
        if not isinstance(item, dict):
            checked = Checked(document, prefix, "?", "")
            checked.problem((), f"expected a mapping with apiVersion and kind, got {type(item).__name__}")
            found.append(checked)
            continue
        kind = item.get("kind") or ""
        kind = kind if isinstance(kind, str) else text_of(kind)
        api_version = item.get("apiVersion", "")
        api_version = api_version if isinstance(api_version, str) else text_of(api_version)
        meta = item["metadata"] if isinstance(item.get("metadata"), dict) else {}
        namespace = text_of(meta.get("namespace") or "default")
        label = (
            f"{text_of(kind) if kind else '<no kind>'} {namespace}/{text_of(meta.get('name', '<no name>'))}"
        )
        checked = Checked(document, prefix, kind, label, f"{namespace}/{text_of(meta.get('name'))}")
        if kind in KINDS and api_version.startswith(f"{GROUP}/"):
            if api_version != API_VERSION:
                checked.problem(
                    ("apiVersion",),
                    f"{text_of(api_version)} is not supported; only {API_VERSION} is (convert the manifest)",
                )
            found.append(checked)
        elif kind in KINDS or api_version.startswith(f"{GROUP}/"):
            checked.problem(
                ("apiVersion",) if kind in KINDS else ("kind",),
                f"expected apiVersion {API_VERSION} with kind Device or DeviceModel, "
                f"got apiVersion {text_of(api_version) or '<none>'} and kind {text_of(kind) or '<none>'}",
            )
            found.append(checked)
        else:
            report.ignored.append(checked)
    return found


def _check_schema(checked: Checked) -> None:
    if checked.problems:
        return
    cls = KINDS[checked.kind]
    data = checked.document.data
    for part in checked.prefix:
        data = data[part]
    try:
        checked.obj = cls.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            checked.problem(error["loc"], _message(error))


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown field (not in the {API_VERSION} schema)"
    if kind == "missing":
        return "required field is missing"
    got = error.get("input")
    if kind.endswith("_type") or kind in ("literal_error", "string_pattern_mismatch"):
        return f"{error['msg']} (got {quote(got)})"
    return str(error["msg"])


# --------------------------------------------------------------------------- layer 2: one object


def _check_object(checked: Checked) -> None:
    obj = checked.obj
    assert obj is not None
    meta = obj.metadata
    if not DNS1123_SUBDOMAIN.match(meta.name):
        checked.problem(("metadata", "name"), f"{quote(meta.name)} is not a DNS-1123 subdomain {_DNS_HINT}")
    if meta.namespace is not None and not DNS1123_LABEL.match(meta.namespace):
        checked.problem(
            ("metadata", "namespace"), f"{quote(meta.namespace)} is not a DNS-1123 label {_DNS_HINT}"
        )
    if isinstance(obj, Device):
        _check_device(checked, obj)
    else:
        _check_model(checked, obj)


_DNS_HINT = "(lower-case letters, digits and '-', starting and ending with a letter or digit)"


def _check_unique(checked: Checked, items: list[Any], where: tuple[PathPart, ...], what: str) -> None:
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.name in first:
            checked.problem(
                (*where, i, "name"),
                f"duplicate {what} name {quote(item.name)} "
                f"(first at {format_path((*where, first[item.name]))})",
            )
        else:
            first[item.name] = i


def _check_device(checked: Checked, device: Device) -> None:
    spec = device.spec
    if spec.device_model_ref is None:
        checked.problem(("spec", "deviceModelRef"), "required: the DeviceModel this device uses")
    elif not DNS1123_SUBDOMAIN.match(spec.device_model_ref.name):
        checked.problem(
            ("spec", "deviceModelRef", "name"),
            f"{quote(spec.device_model_ref.name)} is not a DNS-1123 subdomain {_DNS_HINT}",
        )
    if spec.node_name is not None and spec.node_name and not DNS1123_SUBDOMAIN.match(spec.node_name):
        checked.problem(
            ("spec", "nodeName"), f"{quote(spec.node_name)} is not a DNS-1123 subdomain {_DNS_HINT}"
        )
    if not device.protocol_name:
        checked.problem(
            ("spec", "protocol", "protocolName"),
            "required: the protocol whose mapper serves this device (modbus, bacnet, ...)",
        )
    properties = spec.properties or []
    _check_unique(checked, properties, ("spec", "properties"), "property")
    _check_unique(checked, spec.methods or [], ("spec", "methods"), "method")
    names = {p.name for p in properties}
    for i, method in enumerate(spec.methods or []):
        for j, prop in enumerate(method.property_names or []):
            if prop not in names:
                checked.problem(
                    ("spec", "methods", i, "propertyNames", j),
                    f"{quote(prop)} is not a property of this device",
                )


def _check_model(checked: Checked, model: DeviceModel) -> None:
    properties = model.spec.properties or []
    _check_unique(checked, properties, ("spec", "properties"), "property")
    for i, prop in enumerate(properties):
        numeric = twin_type(prop.type) in NUMERIC_TWIN_TYPES
        bounds: dict[str, float] = {}
        for key in ("minimum", "maximum"):
            text = getattr(prop, key)
            if text in (None, ""):
                continue
            if not numeric:
                checked.problem(
                    ("spec", "properties", i, key),
                    f"{key} applies only to INT, FLOAT and DOUBLE properties, "
                    f"not {text_of(prop.type or 'STRING')}",
                )
                continue
            try:
                bounds[key] = float(parse_value(twin_type(prop.type), text))
            except ValueError as exc:
                checked.problem(("spec", "properties", i, key), f"{exc} ({text_of(prop.type)})")
        if len(bounds) == 2 and bounds["minimum"] > bounds["maximum"]:
            checked.problem(
                ("spec", "properties", i, "maximum"),
                f"maximum {text_of(prop.maximum)} is below minimum {text_of(prop.minimum)}",
            )


# --------------------------------------------------------------------------- layer 3: across objects


def _check_duplicates(objects: list[Checked]) -> None:
    seen: dict[tuple[str, str], Checked] = {}
    for checked in objects:
        if checked.obj is None:
            continue
        key = (checked.kind, checked.obj.key)
        first = seen.setdefault(key, checked)
        if first is not checked:
            checked.problem(
                ("metadata", "name"),
                f"{checked.kind} {checked.obj.key} is defined twice "
                f"(first in {first.document.source}, document {first.document.index})",
            )


def _check_references(objects: list[Checked]) -> None:
    models = {c.obj.key: c.obj for c in objects if isinstance(c.obj, DeviceModel)}
    invalid_models = {c.key for c in objects if c.kind == "DeviceModel" and c.obj is None}
    for checked in objects:
        device = checked.obj
        if not isinstance(device, Device) or device.model_name is None:
            continue
        with _isolated(checked):
            _check_reference(checked, device, models, invalid_models)


def _check_reference(
    checked: Checked, device: Device, models: dict[str, DeviceModel], invalid_models: set[str]
) -> None:
    key = f"{device.namespace}/{device.model_name}"
    model = models.get(key)
    if model is None and key in invalid_models:
        checked.problem(
            ("spec", "deviceModelRef", "name"),
            f"DeviceModel {text_of(key)} is given but not valid "
            "(see its problems); this device is checked against it once it is",
        )
        return
    if model is None:
        known = sorted(m.name for m in models.values() if m.namespace == device.namespace)
        checked.problem(
            ("spec", "deviceModelRef", "name"),
            f"DeviceModel {text_of(key)} is not among the manifests given"
            + (f" (found: {text_of(', '.join(known), 200)})" if known else ""),
        )
        return
    check_device_against_model(device, model, checked.problem)


def check_device_against_model(device: Device, model: DeviceModel, problem: Any) -> None:
    """Report (through ``problem(path, message)``) where a device does not fit its model."""
    protocol = device.protocol_name
    if model.spec.protocol and protocol and model.spec.protocol != protocol:
        problem(
            ("spec", "protocol", "protocolName"),
            f"{quote(protocol)} differs from the protocol {quote(model.spec.protocol)} "
            f"of DeviceModel {model.key}",
        )
    merged = apply_model_defaults(device, model)
    for i, prop in enumerate(merged.spec.properties or []):
        model_prop = model.property(prop.name)
        if model_prop is None:
            known = text_of(", ".join(p.name for p in model.spec.properties or []) or "none", 200)
            problem(
                ("spec", "properties", i, "name"),
                f"{quote(prop.name)} is not a property of DeviceModel {model.key} (it has: {known})",
            )
            continue
        visitor_protocol = prop.visitors.protocol_name if prop.visitors else None
        if visitor_protocol and protocol and visitor_protocol != protocol:
            problem(
                ("spec", "properties", i, "visitors", "protocolName"),
                f"{quote(visitor_protocol)} differs from the device's protocol {quote(protocol)}",
            )
        if prop.desired is None or prop.desired.value == "":
            continue
        if model_prop.access_mode == "ReadOnly":
            problem(
                ("spec", "properties", i, "desired", "value"),
                f"property {quote(prop.name)} is ReadOnly in DeviceModel {model.key}; "
                "a desired value cannot be written",
            )
            continue
        try:
            value = parse_value(twin_type(model_prop.type), prop.desired.value)
            check_range(value, model_prop.minimum, model_prop.maximum)
        except ValueError as exc:
            problem(
                ("spec", "properties", i, "desired", "value"),
                f"{text_of(str(exc), 200)} (property type {text_of(model_prop.type or 'STRING')} "
                f"in DeviceModel {model.key})",
            )
