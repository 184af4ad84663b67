"""Hostile manifests: every limit is named with its setting, nothing escapes as a traceback.

Each case is a minimal reproduction from the fuzzing issue (#19, findings 6-10); before the
limits, each raised (ValueError, RecursionError), ran for minutes or printed megabytes.
"""

from pathlib import Path

import pytest
from click.testing import CliRunner

from kubeedge.api.device import Device, DeviceModel
from kubeedge.api.manifests import ManifestLimits, Problem, parse_documents, quote, read_documents
from kubeedge.api.validation import validate_documents
from kubeedge.cli import cli
from kubeedge.errors import ConfigError

MODEL = """\
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: m, namespace: ns}
spec:
  protocol: virtual
  properties:
  - name: t
    type: INT
    accessMode: ReadWrite
"""
DEVICE = """\
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: d, namespace: ns}
spec:
  deviceModelRef: {name: m}
  protocol: {protocolName: virtual, configData: %s}
  properties:
  - name: t
    collectCycle: %s
    visitors: {protocolName: virtual, configData: %s}
"""


def device(config: str = "{}", cycle: str = "1000", visitor: str = "{value: 1}") -> str:
    return DEVICE % (config, cycle, visitor)


def problems(text: str, limits: ManifestLimits | None = None) -> list[Problem]:
    documents, found = parse_documents("f.yaml", text, *([limits] if limits else []))
    return found + validate_documents(documents).all_problems


def only(text: str, limits: ManifestLimits | None = None) -> Problem:
    found = problems(text, limits)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def bomb(levels: int, width: int = 10) -> str:
    """``levels`` anchors, each a list of ``width`` aliases of the one before."""
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines)


def test_the_reference_documents_are_valid() -> None:
    assert problems(MODEL + "---\n" + device()) == []


def test_an_integer_over_the_digit_limit_is_named_with_its_line() -> None:
    problem = only(MODEL + "---\n" + device(cycle="9" * 5000))
    assert "maxIntegerDigits" in str(problem) and "longer than 100 digits" in problem.message
    assert problem.line == 19 and problem.document == 2  # collectCycle's line
    assert len(str(problem)) < 200


def test_a_huge_hex_kind_is_refused_before_it_is_made_a_string() -> None:
    # kind: 0x... is an int, which the label once turned into a 5,000-digit string (ValueError)
    assert "maxIntegerDigits" in only("kind: 0x" + "f" * 5000 + "\n").message


def test_an_integer_of_the_limit_s_length_is_taken_as_it_is() -> None:
    (document,), found = parse_documents("f.yaml", "n: " + "9" * 100 + "\n")
    assert found == [] and document.data == {"n": int("9" * 100)}


def test_flow_nesting_500_deep_is_named_not_a_recursion_error() -> None:
    text = MODEL + "---\n" + device(config="{x: " + "[" * 500 + "]" * 500 + "}")
    problem = only(text)
    assert "nested more than 100 levels deep (maxDepth)" in problem.message
    assert problem.document == 2


def test_deep_nesting_in_a_field_a_problem_needs_the_line_of() -> None:
    # the line locator composed the document again with Python recursion: RecursionError
    text = "apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\nmetadata: {name: " + "[" * 500 + "]" * 500
    assert "maxDepth" in only(text + "}\n").message


def test_deep_lists_in_a_model_visitor_are_refused_before_model_defaults_recurse() -> None:
    deep = "[" * 150 + "]" * 150
    text = MODEL.replace(
        "accessMode: ReadWrite", "accessMode: ReadWrite\n    visitors: {configData: {x: %s}}"
    )
    first, *knock_on = problems(text % deep + "---\n" + device())
    assert "maxDepth" in first.message and first.document == 1
    assert [p.path for p in knock_on] == ["spec.deviceModelRef.name"]  # the device lost its model


def test_data_deeper_than_python_can_copy_is_a_problem_of_its_object_only() -> None:
    # A source without the YAML limits (data built in Python): the object that cannot be checked
    # says why, and the others are still checked.
    (model_doc,), _ = parse_documents("m.yaml", MODEL)
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    model_doc.data["spec"]["properties"][0]["visitors"] = {"configData": {"x": deep}}
    other_model = MODEL.replace("name: m,", "name: plain,")
    good = device().replace("name: d,", "name: good,").replace("{name: m}", "{name: plain}")
    docs, _ = parse_documents("d.yaml", device() + "---\n" + other_model + "---\n" + good)
    report = validate_documents([model_doc, *docs])
    broken = [p for p in report.all_problems if "could not be checked" in p.message]
    assert broken and all(p.obj == "Device ns/d" for p in broken), [str(p) for p in report.all_problems]
    assert len(str(broken[0])) < 400
    assert report.valid(Device)[0].key == "ns/good"


def test_an_alias_bomb_of_8_anchors_by_10_aliases_is_refused_at_once() -> None:
    # 10^8 nodes once expanded: 120 s and 9.2 GB before; measured in microseconds now
    problem = only(bomb(8) + "\n")
    assert "maxAliasNodes" in problem.message and problem.line is not None


def test_an_alias_bomb_inside_protocol_config_data_is_refused() -> None:
    # 444 bytes that passed validate and cost the edge 25 s of CPU and 2.6 GB
    text = MODEL + "---\n" + device(config="{" + ", ".join(bomb(6).splitlines()) + "}")
    problem = only(text)
    assert "maxAliasNodes" in problem.message and problem.document == 2


def test_reusing_a_block_through_aliases_is_fine() -> None:
    text = MODEL + "---\n" + device(visitor="&v {value: 1}") + "  - {name: t2, visitors: *v}\n"
    assert not [p for p in problems(text) if "alias" in p.message]


def test_recursive_config_data_is_refused_with_a_named_error() -> None:
    problem = only(MODEL + "---\n" + device(visitor="{x: &rec [*rec]}"))
    assert "recursive alias" in problem.message and problem.line == 20


@pytest.mark.parametrize(
    "tag", ["!!binary aGVsbG8=", "!!set {a, b}", "!!timestamp 2001-01-01", "!!omap [a: 1]"]
)
def test_tags_with_no_json_form_are_refused(tag: str) -> None:
    problem = only(MODEL + "---\n" + device(visitor=f"{{x: {tag}}}"))
    assert "is not allowed: a Kubernetes object is JSON" in problem.message


def test_a_plain_date_stays_a_string() -> None:
    (document,), found = parse_documents("f.yaml", "d: 2001-01-01\n")
    assert found == [] and document.data == {"d": "2001-01-01"}


def test_a_file_over_the_size_limit_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(MODEL + "# " + "x" * 1000 + "\n")
    documents, found = read_documents([path], ManifestLimits(max_file_bytes=1000))
    assert documents == []
    (problem,) = found
    assert problem.source == str(path) and "maxFileBytes" in problem.message
    assert only(MODEL, ManifestLimits(max_file_bytes=100)).message.startswith("file is ")


def test_limits_are_settings_with_camel_case_names() -> None:
    limits = ManifestLimits.model_validate({"maxDepth": 5, "maxNodes": 50, "maxIntegerDigits": 3})
    assert "maxDepth" in only("a: [[[[[[1]]]]]]\n", limits).message
    assert "maxIntegerDigits" in only("a: 1234\n", limits).message
    assert "maxNodes" in only("a: [" + ", ".join(["1"] * 60) + "]\n", limits).message
    with pytest.raises(ValueError, match=r"max_depth|maxDepth"):
        ManifestLimits.model_validate({"maxDepth": 10_000})


def test_messages_quote_a_bounded_prefix_of_any_value() -> None:
    name = "x" * 100_000
    text = MODEL + "---\n" + device().replace("name: d,", f"name: {name},")
    found = problems(text)
    assert found and all(len(str(p)) < 600 for p in found), [len(str(p)) for p in found]
    assert "…(100000 bytes)" in str(found[0])
    # a long unknown key, a long desired value, a long property name
    text = MODEL + "---\n" + device().replace("collectCycle: 1000", f"{'k' * 5000}: 1")
    assert all(len(str(p)) < 600 for p in problems(text))
    desired = device().replace("collectCycle: 1000", f"desired: {{value: '{'7' * 60000}'}}")
    assert all(len(str(p)) < 600 for p in problems(MODEL + "---\n" + desired))


def test_quote() -> None:
    assert quote("short") == "'short'"
    assert quote("y" * 200) == repr("y" * 80) + "…(200 bytes)"
    assert len(quote(list(range(10_000)))) <= 81
    assert "digits" in quote(10**5000)
    shared: list = [0] * 10
    for _ in range(30):
        shared = [shared] * 10  # 10^30 leaves: quote must not walk them
    assert len(quote(shared)) <= 81


async def test_the_edge_config_takes_limits_for_the_standalone_source(tmp_path: Path) -> None:
    from kubeedge.config import EdgeConfig
    from kubeedge.edge.core import EdgeCore
    from kubeedge.edge.standalone import StandaloneSettings

    settings = StandaloneSettings.model_validate({"limits": {"maxDepth": 20, "maxFileBytes": 1000}})
    assert settings.limits.max_depth == 20 and settings.limits.max_file_bytes == 1000
    config = EdgeConfig.model_validate(
        {
            "dataDir": str(tmp_path),
            "manifests": str(tmp_path),
            "modules": {"standalone": {"limits": {"maxDepht": 3}}},
        }
    )
    with pytest.raises(ConfigError, match=r"modules\.standalone\.limits\.maxDepht: unknown key"):
        await EdgeCore(config).start()


runner = CliRunner()


@pytest.mark.parametrize(
    "content", ["", "# only a comment\n", "---\n---\n"], ids=["empty", "comments", "empty-documents"]
)
def test_validate_refuses_empty_input(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(content)
    result = runner.invoke(cli, ["validate", "-f", str(path)])
    assert result.exit_code == 1, result.output
    assert "no objects found" in result.output


def test_validate_refuses_an_empty_folder_and_empty_stdin(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["validate", "-f", str(tmp_path)])
    assert result.exit_code == 1 and "no objects found" in result.output
    result = runner.invoke(cli, ["validate", "-f", "-"], input="")
    assert result.exit_code == 1 and "no objects found" in result.output


def test_validate_prints_bounded_lines_for_hostile_files(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(
        "apiVersion: devices.kubeedge.io/v1beta1\nkind: Device\n" + bomb(6) + "\nmetadata: {name: *a5}\n"
    )
    (tmp_path / "int.yaml").write_text(
        MODEL.replace("name: m,", "name: m2,") + "---\n" + device(cycle="9" * 5000)
    )
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 900 + "]" * 900 + "\n")
    (tmp_path / "rec.yaml").write_text(MODEL + "---\n" + device(visitor="{x: &rec [*rec]}"))
    result = runner.invoke(cli, ["validate", "-f", str(tmp_path)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert max(len(line) for line in result.output.splitlines()) < 400
    for words in ("maxAliasNodes", "maxIntegerDigits", "maxDepth", "recursive alias"):
        assert words in result.output, result.output


def test_validate_reads_at_most_the_limit_from_stdin() -> None:
    result = runner.invoke(cli, ["validate", "-f", "-"], input="# " + "x" * (8 * 1024 * 1024 + 10))
    assert result.exit_code == 1 and "maxFileBytes" in result.output


def test_model_and_device_survive_validated_documents() -> None:
    (model_doc, device_doc), found = parse_documents("f.yaml", MODEL + "---\n" + device())
    assert found == []
    assert DeviceModel.model_validate(model_doc.data).key == "ns/m"
    assert Device.model_validate(device_doc.data).key == "ns/d"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("node: [" + "[" * 400 + "]" * 400 + "]\n", "maxDepth"),  # RecursionError before
        ("node: " + "9" * 5000 + "\n", "maxIntegerDigits"),  # ValueError before
        ("node: edge-1\nbus: " + "{a: &a [*a]}" + "\n", "recursive alias"),
    ],
    ids=["deep", "bigint", "recursive"],
)
def test_edge_config_is_read_within_the_same_limits(tmp_path: Path, text: str, words: str) -> None:
    from kubeedge.config import load_config

    path = tmp_path / "edge.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:") and words in str(caught.value)


def test_edge_config_errors_quote_a_bounded_prefix(tmp_path: Path) -> None:
    from kubeedge.config import load_config

    path = tmp_path / "edge.yaml"
    path.write_text("node: " + "x" * 100_000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "node: " in str(caught.value) and "(100" in str(caught.value)
    assert len(str(caught.value)) < 600


def test_validate_judges_files_by_the_limits_of_the_edge_configuration(tmp_path: Path) -> None:
    """An edge configured with other limits judges a file as `validate -c edge.yaml` does."""
    manifest = tmp_path / "plant.yaml"
    manifest.write_text(MODEL + "---\n" + device() + "# padding\n" * 200)  # about 2.5 KB
    small = tmp_path / "small.yaml"
    small.write_text("node: edge-1\nmodules:\n  standalone:\n    limits: {maxFileBytes: 1024}\n")

    result = runner.invoke(cli, ["validate", "-f", str(manifest)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["validate", "-f", str(manifest), "-c", str(small)])
    assert result.exit_code == 1 and "maxFileBytes" in result.output, result.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("node: edge-1\nmodules:\n  standalone:\n    limits: {maxFileBytes: lots}\n")
    result = runner.invoke(cli, ["validate", "-f", str(manifest), "-c", str(bad)])
    assert result.exit_code == 1
    assert "modules.standalone.limits.maxFileBytes" in result.output, result.output
