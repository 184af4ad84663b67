"""The documented cloud.yaml examples load, and the README's table names every key there is."""

from __future__ import annotations

import re
from pathlib import Path

from kubeedge_cloud.config import CloudConfig, LimitsConfig, ResendConfig, StatusConfig, load_cloud_config
from kubeedge_cloud.sources.files import FilesSettings

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_examples_of_cloud_yaml_load(tmp_path) -> None:
    cloud_readme = (ROOT / "cloud" / "README.md").read_text()
    example = re.search(r"```yaml\n# cloud.yaml\n(.*?)```", cloud_readme, re.S)
    assert example is not None
    readme = (ROOT / "README.md").read_text()
    heredoc = re.search(r"cat > (?:try-cloud/)?cloud.yaml <<'YAML'\n(.*?)YAML\n", readme, re.S)
    assert heredoc is not None
    for text in (example.group(1), heredoc.group(1)):
        path = tmp_path / "cloud.yaml"
        path.write_text(text)
        config = load_cloud_config(path)
        assert config.tls is not None
        assert config.source.kind == "files"
        FilesSettings.model_validate(config.source.settings)


def test_the_cloud_readme_names_every_key() -> None:
    table = (ROOT / "cloud" / "README.md").read_text()
    documented = set(re.findall(r"`([a-zA-Z]+(?:\.[a-zA-Z]+)?)`", table))

    def keys(model: type, prefix: str = "") -> set[str]:
        return {prefix + (f.alias or name) for name, f in model.model_fields.items()}

    expected = {k for k in keys(CloudConfig) if k not in {"baseDir"}}
    expected |= keys(LimitsConfig, "limits.") | keys(ResendConfig, "resend.") | keys(StatusConfig, "status.")
    expected |= {"tls.certFile", "tls.keyFile", "source.kind"}
    expected |= {f"source.{f.alias or n}" for n, f in FilesSettings.model_fields.items()}
    missing = sorted(
        k
        for k in expected
        if k not in documented and k not in {"limits", "resend", "status", "tls", "source"}
    )
    assert missing == []
