import json

import pytest
import torch
from safetensors.torch import save_file

from mtv_core.errors import ModelFileError
from mtv_core.checkpoints import load_vae
from mtv_core.pipeline.vae import LATENT_SCALE, decode_latents, encode_frames, tiled_decode


def _frames(frames=9, height=32, width=48, seed=0):
    return torch.rand(1, 3, frames, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_loads_a_diffusers_folder_and_a_converted_file_identically(tiny_vae, tmp_path):
    tiny_vae.save_pretrained(tmp_path / "folder")
    save_file(tiny_vae.state_dict(), str(tmp_path / "vae.safetensors"),
              metadata={"config": json.dumps(dict(tiny_vae.config))})
    latents = torch.randn(1, 3, 16, 4, 6, generator=torch.Generator().manual_seed(0))
    expected = decode_latents(tiny_vae, latents)
    for path in (tmp_path / "folder", tmp_path / "vae.safetensors"):
        torch.testing.assert_close(decode_latents(load_vae(path), latents), expected)


def test_a_file_without_config_metadata_is_refused(tiny_vae, tmp_path):
    save_file(tiny_vae.state_dict(), str(tmp_path / "bare.safetensors"))
    with pytest.raises(ModelFileError, match="no 'config' metadata"):
        load_vae(tmp_path / "bare.safetensors")


def test_a_missing_path_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="neither a diffusers folder nor a .safetensors file"):
        load_vae(tmp_path / "vae.pt")


def test_encode_scales_by_0_7_and_puts_frames_before_channels(tiny_vae):
    frames = _frames()
    latents = encode_frames(tiny_vae, frames, torch.Generator().manual_seed(0))
    assert latents.shape == (1, 3, 16, 4, 6)
    posterior = tiny_vae.encode(frames).latent_dist
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(0))
    expected = ((posterior.mean + posterior.std * noise) * LATENT_SCALE).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(latents, expected)


def test_decode_unscales_and_slices_time_like_a_plain_decode(tiny_vae):
    latents = torch.randn(1, 13, 16, 4, 6, generator=torch.Generator().manual_seed(1))
    pixels = decode_latents(tiny_vae, latents)
    assert pixels.shape == (1, 3, 49, 32, 48)
    with torch.no_grad():
        plain = tiny_vae.decode(latents.permute(0, 2, 1, 3, 4) / LATENT_SCALE).sample.clamp(-1, 1)
    torch.testing.assert_close(pixels, plain)


def _local_decoder(z):
    """A decoder without spatial context (each latent pixel -> an 8x8 block): tiling must be exact for it."""
    mixed = torch.einsum("bcthw,c->bthw", z, torch.linspace(-1, 1, z.shape[1]))[:, None]
    return torch.nn.functional.interpolate(mixed, scale_factor=(1, 8, 8), mode="nearest").repeat(1, 3, 1, 1, 1)


@pytest.mark.parametrize("height, width, tile, overlap", [(5, 7, 3, 1), (9, 4, 4, 2), (6, 6, 6, 2), (11, 13, 5, 3)])
def test_tiled_decode_is_exact_for_a_local_decoder_at_sizes_that_do_not_divide(height, width, tile, overlap):
    z = torch.randn(1, 4, 2, height, width, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(tiled_decode(_local_decoder, z, tile, overlap), _local_decoder(z))


def test_tiled_decode_of_the_real_vae_is_close_to_a_plain_decode(tiny_vae):
    latents = torch.randn(1, 3, 16, 6, 7, generator=torch.Generator().manual_seed(3))
    plain = decode_latents(tiny_vae, latents)
    tiled = decode_latents(tiny_vae, latents, tile_latents=4, tile_overlap=2)
    assert tiled.shape == plain.shape == (1, 3, 9, 48, 56)
    # Not exact: the VAE's GroupNorm sees per-tile statistics. Far closer than two unrelated decodes, though.
    unrelated = decode_latents(tiny_vae, torch.randn_like(latents))
    assert (tiled - plain).abs().mean() < 0.2 * (unrelated - plain).abs().mean()


def test_decoding_reports_each_slice_and_tile_and_stops_between_slices(tiny_vae):
    from mtv_core.pipeline.sampling import GenerationInterrupted

    latents = torch.randn(1, 13, 16, 4, 6, generator=torch.Generator().manual_seed(1))
    told = []
    whole = decode_latents(tiny_vae, latents, progress=lambda done, total: told.append((done, total)))
    assert told == [(done, 6) for done in range(7)]  # 13 latents: 6 temporal slices
    told.clear()
    decode_latents(tiny_vae, latents, tile_latents=4, tile_overlap=2, progress=lambda done, total: told.append((done, total)))
    assert told == [(done, 12) for done in range(13)]  # 2 tiles of 4x4 latents, 6 slices each
    told.clear()
    with pytest.raises(GenerationInterrupted):
        decode_latents(tiny_vae, latents, progress=lambda done, total: told.append(done), interrupt=lambda: len(told) == 3)
    assert told == [0, 1, 2]  # two slices decoded, the third refused before it ran
    assert whole.shape == (1, 3, 49, 32, 48)
