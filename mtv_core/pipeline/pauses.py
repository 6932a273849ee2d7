"""Where nobody speaks, in latent frames: what `GuidanceScales.speech_in_pauses` applies to.

A frame is speech when the louder speaker's stem reaches PAUSE_DBFS (the speech gate's level: below it a demixed stem
holds only leakage) within SPEECH_MARGIN_FRAMES of it, so a word's onset and the mouth closing after it count as
speech. Latent frame 0 holds frame 0 and latent frame j frames 4j-3 .. 4j (the CogVideoX VAE's causal grouping); a
latent frame is a pause when none of its frames is speech.
"""

import torch
import torch.nn.functional as F

from ..spec import SPEECH_GATE_DBFS

PAUSE_DBFS = SPEECH_GATE_DBFS
SPEECH_MARGIN_FRAMES = 6  # a quarter second at 24 fps


def pause_latent_frames(levels: torch.Tensor, latent_frames: int, compression: int = 4) -> torch.Tensor:
    """levels: (F,) dBFS per video frame, F = 1 + compression x (latent_frames - 1) -> (latent_frames,) bool, True
    where nobody speaks."""
    frames = 1 + compression * (latent_frames - 1)
    if levels.shape != (frames,):
        raise ValueError(f"levels of shape {tuple(levels.shape)} for {latent_frames} latent frames; give ({frames},)")
    speech = (levels >= PAUSE_DBFS).float()[None, None]
    near_speech = F.max_pool1d(speech, 2 * SPEECH_MARGIN_FRAMES + 1, stride=1, padding=SPEECH_MARGIN_FRAMES)[0, 0] > 0
    spoken = torch.empty(latent_frames, dtype=torch.bool)
    spoken[0] = near_speech[0]
    spoken[1:] = near_speech[1:].view(latent_frames - 1, compression).any(dim=1)
    return ~spoken
