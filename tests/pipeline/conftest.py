"""Tiny random models and inputs for the pipeline tests. Nothing is downloaded."""

import pytest
from pipeline_models import make_features, make_tiny_model, make_tiny_vae

from mtv_core import testing


@pytest.fixture(scope="session")
def tiny_model():
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_vae():
    return make_tiny_vae()


@pytest.fixture(scope="session")
def features(tiny_model):
    return make_features(tiny_model)


@pytest.fixture(scope="session")
def t5_folder(tmp_path_factory):
    return testing.save_tiny_t5(tmp_path_factory.mktemp("t5"))
