"""Fixtures for the trainer tests."""

import pytest
import torch
from trainer_data import write_tiny_dataset


@pytest.fixture
def tiny_dataset(tmp_path):
    return write_tiny_dataset(tmp_path / "data")


@pytest.fixture(scope="module")
def wav2vec_folder(tmp_path_factory):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    folder = tmp_path_factory.mktemp("wav2vec")
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=12, intermediate_size=37, num_attention_heads=2,
                                 conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                 num_conv_pos_embedding_groups=2)).eval().save_pretrained(folder)
    return folder
