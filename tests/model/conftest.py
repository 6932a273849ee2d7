"""Fixtures: synthetic official-layout checkpoints, converted once per session."""

import pytest
from sat_layout import write_sat_checkpoint

from mtv_core.models import mtv_config


@pytest.fixture(scope="session")
def sat_single(tmp_path_factory):
    """(path of the official-layout .pt, its tensors, the path of the converted safetensors)."""
    from mtv_core.checkpoints import convert_checkpoint

    folder = tmp_path_factory.mktemp("sat_single")
    config = mtv_config("tiny-single")
    sd = write_sat_checkpoint(folder / "mp_rank_00_model_states.pt", config)
    report = convert_checkpoint(folder / "mp_rank_00_model_states.pt", folder / "mtv_single.safetensors")
    assert report.ok, report.lines()
    return folder / "mp_rank_00_model_states.pt", sd, folder / "mtv_single.safetensors"


@pytest.fixture(scope="session")
def sat_multi(tmp_path_factory):
    from mtv_core.checkpoints import convert_checkpoint

    folder = tmp_path_factory.mktemp("sat_multi")
    config = mtv_config("tiny-multi")
    sd = write_sat_checkpoint(folder / "mp_rank_00_model_states.pt", config, seed=1)
    report = convert_checkpoint(folder / "mp_rank_00_model_states.pt", folder / "mtv_multi.safetensors")
    assert report.ok, report.lines()
    return folder / "mp_rank_00_model_states.pt", sd, folder / "mtv_multi.safetensors"
