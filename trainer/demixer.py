"""`python -m trainer demixer`: fit a small HTDemucs to clips that come with their stems (speech / effects /
music WAVs beside each mp4, as `python -m mtv_lab world` writes them and `trainer prepare` reads them).

It is how the built-in demo gets a demixer of its own: the model and its file are the ones the official
pipeline uses (MVSEP-CDX23's sources music / effect / dialog, read by `mtv_core.checkpoints.load_demixer`), only
much smaller. Each batch mixes the stems of three different clips with random gains, so the model learns
the sounds themselves rather than which clips they came in; each source is drawn from the clips where it sounds
(a plain draw would leave the effects, heard in one clip of five in the world, silent most of the time). Loss: L1 on the waveforms, as demucs trains.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from mtv_core.audio.demix import CINEMATIC_SOURCES
from mtv_core.audio.io import load_audio
from mtv_core.checkpoints import DemixerFile
from mtv_core.spec import EFFECTS, MUSIC, SPEECH

from .errors import TrainerError

STEM_OF_SOURCE = {"music": MUSIC, "effect": EFFECTS, "dialog": SPEECH}
GAIN_DB = 6.0  # each stem's level varies by up to this much either way
AUDIBLE = 1e-3  # a stem whose peak is below this is silent in its clip (in the world, most clips have no effects)
SILENT_SHARE = 0.2
SMALL_HTDEMUCS = dict(audio_channels=2, channels=16, depth=3, nfft=512, t_layers=1, t_heads=4, t_hidden_scale=2.0,
                      bottom_channels=0, dconv_depth=1, cac=True)


def read_stem_sets(folders: list[Path], sample_rate: int, segment: int) -> list[dict[str, torch.Tensor]]:
    """Per clip: {stem: mono samples}, for every clip whose three stems exist and last at least one segment."""
    sets = []
    for folder in folders:
        for speech in sorted(Path(folder).glob(f"*_{SPEECH}.wav")):
            clip = speech.name[: -len(f"_{SPEECH}.wav")]
            paths = {stem: speech.with_name(f"{clip}_{stem}.wav") for stem in STEM_OF_SOURCE.values()}
            if not all(path.is_file() for path in paths.values()):
                continue
            stems = {stem: load_audio(path, sample_rate=sample_rate, mono=True).samples[0] for stem, path in paths.items()}
            if min(len(samples) for samples in stems.values()) >= segment:
                sets.append(stems)
    if len(sets) < 3:
        raise TrainerError(f"found {len(sets)} clips with all three stems (<clip>_speech.wav, _effects.wav, _music.wav) "
                           f"in {', '.join(map(str, folders))}; a demixer needs at least 3 (make some with `python -m mtv_lab world`)")
    return sets


def random_mixes(sets: list[dict], size: int, segment: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """(mix (B, 2, T), sources (B, 3, 2, T)): each source from its own random clip in which it sounds, at a random
    gain, or (one time in SILENT_SHARE) silent, so the model also learns that a sound can be absent."""
    sources = torch.zeros(size, len(CINEMATIC_SOURCES), 2, segment)
    for row in range(size):
        for index, source in enumerate(CINEMATIC_SOURCES):
            stem = STEM_OF_SOURCE[source]
            sounding = [stems[stem] for stems in sets if stems[stem].abs().max() > AUDIBLE]
            if not sounding or rng.random() < SILENT_SHARE:
                continue
            samples = rng.choice(sounding)
            start = rng.randrange(len(samples) - segment + 1)
            gain = 10 ** (rng.uniform(-GAIN_DB, GAIN_DB) / 20)
            sources[row, index] = gain * samples[start:start + segment]
    return sources.sum(dim=1), sources


def train_demixer(sets: list[dict], sample_rate: int, segment_seconds: float, steps: int, batch_size: int, lr: float,
                  seed: int, log=print) -> DemixerFile:
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    rng = random.Random(seed)
    kwargs = {**SMALL_HTDEMUCS, "sources": list(CINEMATIC_SOURCES), "samplerate": sample_rate, "segment": segment_seconds}
    model = HTDemucs(**kwargs)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    segment = int(segment_seconds * sample_rate)
    started = time.monotonic()
    for step in range(1, steps + 1):
        mix, sources = random_mixes(sets, batch_size, segment, rng)
        loss = (model(mix) - sources).abs().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps:
            log(f"step {step}/{steps}: L1 {loss.item():.5f} ({time.monotonic() - started:.0f} s)")
    state = {name: tensor.detach().float().contiguous() for name, tensor in model.state_dict().items()}
    return DemixerFile(args=[], kwargs=kwargs, state=state)
