import pytest
import torch

from mtv_core.errors import ModelFileError
from mtv_core.checkpoints import load_text_encoder
from mtv_core.text import PromptTruncatedWarning, zero_text_embedding


def test_encodes_226_tokens_from_a_local_folder(t5_folder):
    encoder = load_text_encoder(t5_folder, dtype=torch.float32)
    embeddings = encoder.encode(["one man is speaking", "a red car"])
    assert embeddings.shape == (2, 226, 32)
    assert not torch.equal(embeddings[0], embeddings[1])
    again = encoder.encode(["a red car"])
    torch.testing.assert_close(again[0], embeddings[1])


def test_a_long_prompt_warns_with_its_token_count(t5_folder):
    encoder = load_text_encoder(t5_folder, dtype=torch.float32)
    with pytest.warns(PromptTruncatedWarning, match="has 301 T5 tokens but the model reads only 226"):
        encoder.encode(["car " * 300])


def test_a_short_prompt_does_not_warn(t5_folder, recwarn):
    load_text_encoder(t5_folder, dtype=torch.float32).encode(["car " * 225])
    assert not [w for w in recwarn if issubclass(w.category, PromptTruncatedWarning)]


def test_unconditional_embedding_is_zero():
    like = torch.randn(1, 226, 8)
    assert torch.equal(zero_text_embedding(like), torch.zeros(1, 226, 8))


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(ModelFileError, match="nothing_here.*config.json"):
        load_text_encoder(tmp_path / "nothing_here")
