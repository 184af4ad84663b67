from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def every_field() -> Path:
    return Path(__file__).parent / "data" / "every-field.yaml"
