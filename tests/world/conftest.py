"""A small world written once for the world and evaluation tests."""

import pytest
from world_test_settings import SETTINGS

from mtv_lab.world import write_world


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    write_world(folder, SETTINGS)
    return folder
