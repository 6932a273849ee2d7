"""Live previews: the latent -> RGB projection each VAE gets, the image it makes, and the colours it is fitted to."""

import av
import numpy as np
import pytest
import torch

from mtv_core import demo
from mtv_core.pipeline.preview import (
    OFFICIAL_FACTORS,
    LatentPreview,
    colours_at_latent_resolution,
    level_error,
    preview_for_vae,
)
from mtv_core.checkpoints import load_vae
from mtv_core.pipeline.vae import decode_latents, encode_frames

# Measured when the factors were fitted (tools/fit_preview_factors.py): 12.05 levels over both held-out example
# clips, 12.2 on these 17 frames of the full-scene example. One mean colour misses by 65 levels.
HELD_OUT_ERROR_LIMIT = 15.0


@pytest.fixture(scope="module")
def demo_vae():
    return load_vae(demo.VAE)


def _clip_frames(path, count: int) -> torch.Tensor:
    with av.open(str(path)) as container:
        pictures = np.stack([frame.to_ndarray(format="rgb24") for _, frame in zip(range(count), container.decode(video=0))])
    return torch.from_numpy(pictures).permute(3, 0, 1, 2).float()[None] / 127.5 - 1


def test_the_demo_factors_give_the_demo_vaes_colours_on_a_held_out_clip(demo_vae):
    latents = encode_frames(demo_vae, _clip_frames(demo.example_audio("full_scene"), 17), torch.Generator().manual_seed(0))
    colours = colours_at_latent_resolution(decode_latents(demo_vae, latents)[0])
    fitted = preview_for_vae(demo_vae)
    assert fitted.name == "mtv-demo"
    assert level_error(fitted.rgb(latents[0]), colours) < HELD_OUT_ERROR_LIMIT
    assert level_error(LatentPreview.load(OFFICIAL_FACTORS).rgb(latents[0]), colours) > 40  # another VAE's factors miss


def test_fitted_factors_are_used_only_for_their_vae(demo_vae, tiny_vae):
    assert preview_for_vae(demo_vae.to(torch.bfloat16)).name == "mtv-demo"  # any dtype of the same weights
    demo_vae.float()
    assert preview_for_vae(tiny_vae).name == "cogvideox5b"  # another 16-channel VAE: the official factors
    from mtv_core import testing

    eight_channels = testing.tiny_vae()
    eight_channels.register_to_config(latent_channels=8)
    assert preview_for_vae(eight_channels) is None


def test_latent_pixels_stand_for_their_8x8_pixels_and_the_vaes_frame_groups():
    frames = torch.arange(9, dtype=torch.float32)[None, :, None, None].expand(3, 9, 16, 16).clone()
    frames[:, :, :8, :8] += 100  # the top-left latent pixel of every frame
    colours = colours_at_latent_resolution(frames)
    assert colours.shape == (3, 2, 2, 3)
    # latent 0 <- frame 0; latent 1 <- frames 1..4; latent 2 <- frames 5..8
    assert colours[:, 1, 1, 0].tolist() == [0.0, 2.5, 6.5]
    assert colours[:, 0, 0, 0].tolist() == [100.0, 102.5, 106.5]


def test_the_preview_is_the_first_middle_and_last_frame_side_by_side():
    identity = LatentPreview("identity", torch.eye(3), torch.tensor([0.0, 0.0, -1.0]))
    latents = torch.zeros(1, 5, 3, 2, 3)
    for frame in range(5):
        latents[0, frame, 0] = frame / 4  # red rises from 0 to 1 over the frames
    image = identity.image(latents)
    scale = 8  # 2 x 11 latent pixels (3 frames of 3 columns and 2 gaps), enlarged to at most 512
    assert image.shape == (2 * scale, 11 * scale, 3) and image.dtype == np.uint8
    reds = [image[0, column * scale, 0] for column in (0, 4, 8)]
    assert reds == [128, 191, 255]  # frames 0, 2 and 4: (red + 1) x 127.5
    assert image[:, 3 * scale:4 * scale].max() == 0  # the gap between frames is black
    assert image[..., 2].max() == 0  # blue: 0 + bias -1, clamped to black
