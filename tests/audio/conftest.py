import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from audio_signals import tiny_wav2vec2_config  # noqa: E402
from avwrite import write_audio  # noqa: E402

TINY_SEGMENT_SECONDS = 1  # tiny HTDemucs training length, keeps chunked tests fast


@pytest.fixture
def write(tmp_path):
    def writer(name, samples, sample_rate, **options):
        path = tmp_path / name
        write_audio(path, samples, sample_rate, video=Path(name).suffix in (".mp4", ".mov", ".mkv", ".webm"), **options)
        return path

    return writer


def tiny_htdemucs(sources, seed=0):
    from fractions import Fraction

    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    return HTDemucs(sources=list(sources), channels=8, depth=4, segment=Fraction(TINY_SEGMENT_SECONDS), t_layers=1).eval()


def save_demucs_package(model, path):
    """Saves `model` exactly as demucs's training code exports a .th release file."""
    from demucs.states import serialize_model
    from omegaconf import OmegaConf

    torch.save(serialize_model(model, OmegaConf.create({"dset": {"samplerate": 44100}})), path)
    return path


@pytest.fixture(scope="session")
def cinematic_th(tmp_path_factory):
    return save_demucs_package(tiny_htdemucs(["music", "effect", "dialog"]), tmp_path_factory.mktemp("demix") / "cdx23-tiny.th")


@pytest.fixture(scope="session")
def music4_th(tmp_path_factory):
    return save_demucs_package(tiny_htdemucs(["drums", "bass", "other", "vocals"], seed=1), tmp_path_factory.mktemp("demix") / "htdemucs-tiny.th")


@pytest.fixture(scope="session")
def tiny_wav2vec2_dir(tmp_path_factory):
    from transformers import Wav2Vec2Model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("wav2vec2") / "tiny"
    Wav2Vec2Model(tiny_wav2vec2_config()).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tiny_wav2vec2_dir):
    from mtv_core.checkpoints import load_wav2vec2

    return load_wav2vec2(tiny_wav2vec2_dir)


