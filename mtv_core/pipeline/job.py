"""A whole job from files: check every input, then audio -> stems -> features, text, model and VAE, segments,
and the mp4. Everything that can be checked without heavy computation is checked first."""

import gc
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError, ModelFileError
from .generate import (GenerationConfig, MemoryOptions, SegmentGenerator, check_compatible, generate_frames,
                       job_fingerprint, prepare_model)
from .keyframes import load_start_image
from .memory import release_cached_memory
from .prompt_schedule import PromptSchedule
from .segments import SegmentStore, output_frame_count, plan_segments
from .vae import SPATIAL_FACTOR, load_vae
from .video import check_writable, write_mp4

STEM_NAMES = ("speech", "speech2", "effects", "music")


@dataclass
class ModelFiles:
    model: Path
    vae: Path
    t5: Path
    wav2vec: Path
    demixer: tuple = ()  # one or several HTDemucs files; or give pre-separated stems instead
    stems: dict = field(default_factory=dict)  # stem name -> audio file


@dataclass
class GenerationJob:
    audio: Path
    schedule: PromptSchedule
    out: Path
    files: ModelFiles
    config: GenerationConfig = field(default_factory=GenerationConfig)
    memory: MemoryOptions = field(default_factory=MemoryOptions)
    start_image: Path | None = None
    mux: tuple = ("mix",)  # "mix" for the original audio, or stem names to sum
    work_dir: Path | None = None  # finished segments; default: next to the output
    dtype: torch.dtype = torch.float32
    keep_segments: bool = False

    @property
    def segment_folder(self) -> Path:
        return Path(self.work_dir) if self.work_dir else Path(self.out).with_name(Path(self.out).stem + ".segments")


def _require_path(path, what: str, fix: str) -> Path:
    if path is None or not Path(path).exists():
        raise ModelFileError(f"{what} {str(path)!r} does not exist; {fix}")
    return Path(path)


def _json_config(path: Path) -> dict:
    if path.is_dir():
        return json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    from ..checkpoints import read_config

    return read_config(path) or {}


def validate_job(job: GenerationJob) -> dict:
    """Every check that needs no heavy computation. Returns the model's config."""
    files = job.files
    model_path = _require_path(files.model, "model file", "pass the converted MTV .safetensors with --model")
    vae_path = _require_path(files.vae, "VAE", "pass the converted VAE .safetensors or a diffusers folder with --vae")
    t5_path = _require_path(files.t5, "T5 folder", "pass the local T5 v1.1 XXL folder with --t5")
    _require_path(files.wav2vec, "wav2vec2 model", "pass a local wav2vec2-base-960h folder or .safetensors")
    _require_path(job.audio, "audio file", "pass an existing audio or video file with --audio")
    if not files.demixer and not files.stems:
        raise ConfigError("no demixer and no stems given; pass --demixer FILE (HTDemucs) or the separated stems "
                          "with --speech / --effects / --music")
    for path in files.demixer:
        _require_path(path, "demixer file", "pass an HTDemucs .th or converted .safetensors file")
    for name, path in files.stems.items():
        if name not in STEM_NAMES:
            raise ConfigError(f"stem name {name!r} is unknown; use one of {STEM_NAMES}")
        _require_path(path, f"{name} stem", f"pass an existing audio file for --{name}")
    for name in job.mux:
        if name != "mix" and name not in STEM_NAMES:
            raise ConfigError(f"audio to mux {name!r} is unknown; use 'mix' or stem names {STEM_NAMES}")
    if job.start_image is not None:
        _require_path(job.start_image, "start image", "pass an existing PNG or JPEG file")
    job.config.validate()
    check_writable(job.out)
    model_config = _json_config(model_path)
    if not model_config:
        raise ModelFileError(f"model file {str(model_path)!r} has no MTV config; convert it with "
                             "`python -m mtv_core convert`")
    _check_fit(model_config, _json_config(vae_path), _json_config(t5_path), vae_path, t5_path)
    if model_config.get("multi_speaker") and "speech2" not in files.stems:
        raise ConfigError("this is a two-speaker (multi) model and no second speaker was given; pass --speech2 FILE "
                          "with --speech FILE (a silent file if Person2 never speaks)")
    return model_config


def _check_fit(model_config: dict, vae_config: dict, t5_config: dict, vae_path: Path, t5_path: Path) -> None:
    latent = vae_config.get("latent_channels")
    if latent is not None and latent != model_config.get("out_channels"):
        raise ConfigError(f"the VAE {str(vae_path)!r} makes {latent}-channel latents but the model takes "
                          f"{model_config.get('out_channels')}; pass the CogVideoX VAE that belongs to this model")
    width = t5_config.get("d_model")
    if width is not None and width != model_config.get("text_embed_dim"):
        raise ConfigError(f"the T5 in {str(t5_path)!r} gives {width}-wide embeddings but the model takes "
                          f"{model_config.get('text_embed_dim')}; pass the T5 v1.1 XXL encoder the model was trained with")


def encode_text(job: GenerationJob) -> torch.Tensor:
    """T5 embeddings of every scheduled prompt; the encoder is released before the transformer loads."""
    from .text import load_text_encoder

    encoder = load_text_encoder(job.files.t5, job.memory.device, job.dtype)
    embeddings = encoder.encode(job.schedule.prompts)
    del encoder
    gc.collect()
    release_cached_memory()
    return embeddings


def separate(job: GenerationJob, waveform):
    from ..audio import load_demixer, stems_from_files

    if job.files.stems:
        return stems_from_files(**{name: str(path) for name, path in job.files.stems.items()})
    demixer = load_demixer([str(p) for p in job.files.demixer], device=job.memory.device)
    stems = demixer.separate(waveform)
    del demixer
    release_cached_memory()
    return stems


def audio_features(job: GenerationJob, stems, fps: float):
    from ..audio import encode_stems, load_wav2vec2

    encoder = load_wav2vec2(job.files.wav2vec, device=job.memory.device)
    features = encode_stems(stems, encoder, fps=fps)
    del encoder
    release_cached_memory()
    return features


def soundtrack(job: GenerationJob, waveform, stems) -> tuple[torch.Tensor, int]:
    if tuple(job.mux) == ("mix",):
        return waveform.samples, waveform.sample_rate
    chosen = [stems.tracks[name] for name in job.mux if name in stems.tracks]
    if not chosen:
        raise ConfigError(f"none of the stems {list(job.mux)} exist in this job; choose from {sorted(stems.tracks)}")
    channels = max(track.shape[0] for track in chosen)
    return sum(track.expand(channels, -1) for track in chosen), stems.sample_rate


def _file_identity(job: GenerationJob) -> list:
    paths = [job.files.model, job.files.vae]
    return [(str(Path(p).resolve()), Path(p).stat().st_size if Path(p).is_file() else 0) for p in paths]


def run_job(job: GenerationJob, progress=None, interrupt=None) -> Path:
    """Run a job end to end; finished segments survive an interruption and a rerun resumes from them."""
    from ..audio import load_audio
    from ..checkpoints import load_mtv_model

    model_config = validate_job(job)
    height, width = model_config["sample_height"] * SPATIAL_FACTOR, model_config["sample_width"] * SPATIAL_FACTOR
    start_image = None if job.start_image is None else load_start_image(job.start_image, width, height)
    waveform = load_audio(job.audio)
    plan = plan_segments(output_frame_count(waveform.duration, job.config.fps))
    stems = separate(job, waveform)
    features = audio_features(job, stems, job.config.fps)
    text = encode_text(job)

    model = load_mtv_model(job.files.model, dtype=job.dtype)
    vae = load_vae(job.files.vae, dtype=job.dtype)
    check_compatible(model, vae)
    swap = prepare_model(model, job.memory)
    fingerprint = job_fingerprint(model, job.config, job.memory, text, job.schedule, features, plan, start_image,
                                  _file_identity(job))
    with SegmentStore(job.segment_folder, fingerprint) as store:
        generator = SegmentGenerator(model, vae, job.config, job.memory, swap, progress, interrupt)
        frames = generate_frames(generator, text, job.schedule, features, plan, store, start_image)
        audio, rate = soundtrack(job, waveform, stems)
        path = write_mp4(job.out, frames, job.config.fps, audio, rate)
        if not job.keep_segments:
            store.remove()
    return path
