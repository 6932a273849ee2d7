"""Fixtures for the trainer tests."""

import pytest
from trainer_data import write_tiny_dataset


@pytest.fixture
def tiny_dataset(tmp_path):
    return write_tiny_dataset(tmp_path / "data")
