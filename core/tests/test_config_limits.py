"""The bus input limits in edge.yaml: defaults, bounds named by key, and the README's example."""

import re
from pathlib import Path

import pytest

from kubeedge.config import EdgeConfig, load_config
from kubeedge.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_limits_have_their_documented_defaults() -> None:
    bus = EdgeConfig().bus
    assert (bus.max_payload, bus.max_topic_length, bus.max_message_rate) == (1024 * 1024, 1024, 2000)


def test_a_topic_limit_whose_replies_would_not_fit_mqtt_is_refused_by_key(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("bus:\n  maxTopicLength: 65530\n  maxMessageRate: 0\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"{path}: bus.maxTopicLength: Input should be less than or equal to 65528" in str(error.value)
    assert f"{path}: bus.maxMessageRate: Input should be greater than 0" in str(error.value)


def test_the_readmes_edge_yaml_is_a_valid_configuration(tmp_path: Path) -> None:
    block = re.search(
        r"`edge.yaml` \(every key is optional\):\n\n```yaml\n(.*?)```", README.read_text(), re.S
    )
    assert block is not None
    path = tmp_path / "edge.yaml"
    path.write_text(block.group(1))
    config = load_config(path)
    assert config.bus.max_topic_length == 1024 and config.bus.max_message_rate == 2000
