"""The command line's job, from files: check every input, then audio -> stems -> features, text, model and VAE,
segments, and the mp4. Everything that can be checked without heavy computation is checked first; messages name the
`generate` command's flags."""

import gc
import hashlib
import json
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .. import lora
from ..audio import probe_audio
from ..audio.demix import STEM_FILES, demix_to_files
from ..audio.features import AudioFeatures, encode_stem_files
from ..audio.diarize import diarize_file, require_speaker_models
from ..audio.io import iter_audio_blocks
from ..audio.speakers import format_speaker_ranges, is_auto, parse_speaker_ranges
from ..checkpoints import (
    file_identity,
    load_demixer,
    load_mtv_model,
    load_text_encoder,
    load_vae,
    load_wav2vec2,
    read_config,
)
from ..errors import ConfigError, ModelFileError
from ..pipeline.generate import GenerationConfig, MemoryOptions, denoise, prepare_model
from ..pipeline.keyframes import load_start_image
from ..pipeline.memory import release_cached_memory
from ..pipeline.parallel import ParallelPlan, ParallelRun, launched_processes, plan_parallel, start_processes
from ..pipeline.prompt_schedule import PromptSchedule
from ..pipeline.session import RenderRequest, RenderSession
from ..pipeline.streams import check_streams_fit, stream_strengths
from ..pipeline.video import check_writable
from ..spec import MAX_STRENGTH, SPEECH, SPEECH2, SPEECH_GATE_DBFS, STEMS, STREAMS
from .checks import check_range

GIVE_SECOND = ("pass --speech2 FILE (a silent file if Person2 never speaks) or --speaker-ranges '0-2.5:1, 2.5-5:2' "
               "(or --speakers auto to find them)")
DROP_SECOND = "pass the multi model with --model, or leave out --speech2, --speaker-ranges and --speakers"


@dataclass
class ModelFiles:
    model: Path
    vae: Path
    t5: Path
    wav2vec: Path
    demixer: tuple = ()  # one or several HTDemucs files; or give pre-separated stems instead
    streams: dict = field(default_factory=dict)  # stream name -> audio file (pre-separated stems, a second speaker)


@dataclass
class GenerationJob:
    audio: Path
    schedule: PromptSchedule
    out: Path
    files: ModelFiles
    config: GenerationConfig = field(default_factory=GenerationConfig)
    memory: MemoryOptions = field(default_factory=MemoryOptions)
    start_image: Path | None = None
    mux: tuple = ("mix",)  # "mix" for the original audio, or stream names to sum
    work_dir: Path | None = None  # finished segments; default: next to the output
    dtype: torch.dtype = torch.float32
    keep_segments: bool = False
    speaker_ranges: str = ""  # two speakers in one speech track: "0-2.5:1, 2.5-5:2" (seconds:speaker), or "auto": found
    strengths: dict = field(default_factory=dict)  # stream -> 0 (its null input) .. MAX_STRENGTH; the second speaker follows speech
    parallel: str = "auto"  # how processes started by torchrun share the work: auto or "ulysses=U,branches=B"
    speech_gate_dbfs: float | None = SPEECH_GATE_DBFS  # the demixed speech stem is silenced below this; None: as separated

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

    return read_config(path) or {}


def validate_job(job: GenerationJob) -> tuple[dict, ParallelPlan]:
    """Every check that needs no heavy computation. Returns the model's config and how processes share the work."""
    files = job.files
    model_path = _require_path(files.model, "model file", "pass the converted MTV .safetensors with --model")
    vae_path = _require_path(files.vae, "VAE", "pass the converted VAE .safetensors or a diffusers folder with --vae")
    t5_path = _require_path(files.t5, "T5 folder", "pass the local T5 v1.1 XXL folder with --t5")
    _require_path(files.wav2vec, "wav2vec2 model", "pass a local wav2vec2-base-960h folder or .safetensors")
    _require_path(job.audio, "audio file", "pass an existing audio or video file with --audio")
    if not files.demixer and not files.streams:
        raise ConfigError("no demixer and no stems given; pass --demixer FILE (HTDemucs) or the separated stems "
                          "with --speech / --effects / --music")
    for path in files.demixer:
        _require_path(path, "demixer file", "pass an HTDemucs .th or converted .safetensors file")
    for name, path in files.streams.items():
        if name not in STREAMS:
            raise ConfigError(f"stream name {name!r} is unknown; use one of {STREAMS}")
        _require_path(path, f"{name} audio", f"pass an existing audio file for --{name}")
    for name in job.mux:
        if name != "mix" and name not in STREAMS:
            raise ConfigError(f"audio to mux {name!r} is unknown; use 'mix' or stream names {STREAMS}")
    if job.start_image is not None:
        load_start_image(_require_path(job.start_image, "start image", "pass an existing PNG or JPEG file"), 16, 16)
    check_writable(job.out)
    model_config = _json_config(model_path)
    if not model_config:
        raise ModelFileError(f"model file {str(model_path)!r} has no MTV config; convert it with "
                             "`python -m mtv_core convert`")
    _check_fit(model_config, _json_config(vae_path), _json_config(t5_path), vae_path, t5_path)
    if job.config.cache is not None and isinstance(model_config.get("num_layers"), int):
        job.config.cache.check_blocks(model_config["num_layers"])
    _check_loras(job.config.loras, model_path)
    if job.speaker_ranges:
        if is_auto(job.speaker_ranges):
            require_speaker_models()
            if not files.demixer and SPEECH not in files.streams:
                raise ConfigError("--speakers auto needs a speech track; pass --demixer FILE or the speech stem with --speech")
        else:
            parse_speaker_ranges(job.speaker_ranges)
        if SPEECH2 in files.streams:
            raise ConfigError("give either --speech2 FILE or --speaker-ranges / --speakers auto, not both")
    for name, value in job.strengths.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_STRENGTH:
            raise ConfigError(f"{name} strength {value!r} is out of range; use a number in 0..{MAX_STRENGTH:g} (1 = as trained)")
    check_range("--speech-gate-dbfs", job.speech_gate_dbfs, -200, 0, fix="or 'off' (the speech stem as separated)")
    given = STEMS + ((SPEECH2,) if SPEECH2 in files.streams or job.speaker_ranges else ())
    model_streams = STREAMS if model_config.get("multi_speaker") else STEMS
    check_streams_fit(given, model_streams, model_config.get("variant", "given"), GIVE_SECOND, DROP_SECOND)
    plan = plan_parallel(job.parallel, launched_processes(), model_config.get("num_attention_heads", 1),
                         len(job.config.guidance.branch_weights()), job.config.cache)
    return model_config, plan


def _check_fit(model_config: dict, vae_config: dict, t5_config: dict, vae_path: Path, t5_path: Path) -> None:
    latent = vae_config.get("latent_channels")
    if latent is not None and latent != model_config.get("out_channels"):
        raise ConfigError(f"the VAE {str(vae_path)!r} makes {latent}-channel latents but the model takes "
                          f"{model_config.get('out_channels')}; pass the CogVideoX VAE that belongs to this model")
    width = t5_config.get("d_model")
    if width is not None and width != model_config.get("text_embed_dim"):
        raise ConfigError(f"the T5 in {str(t5_path)!r} gives {width}-wide embeddings but the model takes "
                          f"{model_config.get('text_embed_dim')}; pass the T5 v1.1 XXL encoder the model was trained with")


def _check_loras(loras, model_path: Path) -> None:
    """Each LoRA fits the model file (its base, modules and shapes), checked on a meta-device build."""
    if not loras:
        return
    identity, model = file_identity(model_path)
    for adapter, _ in loras:
        lora.check_fits(adapter, model, identity)


def encode_text(job: GenerationJob) -> torch.Tensor:
    """T5 embeddings of every scheduled prompt; the encoder is released before the transformer loads."""
    encoder = load_text_encoder(job.files.t5, job.memory.device, job.dtype)
    embeddings = encoder.encode(job.schedule.prompts)
    del encoder
    gc.collect()
    release_cached_memory()
    return embeddings


def separate(job: GenerationJob, work: Path) -> tuple[dict, dict]:
    """({stream: audio file}, {stream: why it is silence}): the demixer's stems (written once into the work folder
    and reused by a rerun with the same speech gate), then the stems given as files on top of them (a second speaker,
    or a track to use instead of the demixer's)."""
    files, flags = {}, {}
    if job.files.demixer:
        folder = work / f"stems-{_digest(job.audio, *job.files.demixer)}"
        report = _stems_report(folder)
        if report is None or report.get("speech_gate_dbfs") != job.speech_gate_dbfs:
            demixer = load_demixer([str(p) for p in job.files.demixer], device=job.memory.device)
            demix_to_files(job.audio, demixer, folder, speech_gate_dbfs=job.speech_gate_dbfs)
            flags.update(demixer.flags)
            del demixer
            release_cached_memory()
        else:
            flags.update({name: stem["flag"] for name, stem in report["stems"].items() if stem.get("flag")})
        files = {name: folder / file for name, file in STEM_FILES.items()}
    for name, path in job.files.streams.items():
        files[name] = Path(path)
        flags.pop(name, None)
    return files, flags


def _stems_report(folder: Path) -> dict | None:
    """The report of stems an earlier run wrote into the work folder, None when there are none (or it is unreadable:
    they are made again). Stems from before the speech gate have no level in their report: as separated (None)."""
    try:
        report = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and isinstance(report.get("stems"), dict) else None


def with_found_speakers(job: GenerationJob, files: dict) -> GenerationJob:
    """With speaker ranges "auto": the job with the ranges found in the speech stem, printed so that they can be
    corrected by hand. Without a second voice everything stays with speaker 1 (and speech2 is silence)."""
    if not is_auto(job.speaker_ranges):
        return job
    found = diarize_file(files[SPEECH])
    print(f"speakers: {found.summary()}", file=sys.stderr)
    if found.voices:
        print(f"to correct them, run again with --speaker-ranges '{found.text}' instead of --speakers auto", file=sys.stderr)
    return replace(job, speaker_ranges=found.text or format_speaker_ranges([(0.0, max(found.duration, 0.01), 1)]))


def audio_features(job: GenerationJob, files: dict, flags: dict, work: Path):
    """wav2vec2 features of the stem files, streamed into a file in the work folder (reused by a rerun)."""
    # "levels": files from before the per-frame levels were kept are not reused
    digest = _digest(job.files.wav2vec, *files.values(), job.speaker_ranges, *sorted(flags), "levels")
    path = work / f"features-{digest}.safetensors"
    if path.is_file():
        return AudioFeatures.load(path)
    encoder = load_wav2vec2(job.files.wav2vec, device=job.memory.device)
    features = encode_stem_files(files, encoder, path, speaker_ranges=job.speaker_ranges, flags=flags)
    del encoder
    release_cached_memory()
    return features


def _digest(*parts) -> str:
    """A short name for inputs: file contents (by size, time and path) and settings."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, (str, Path)) and Path(part).exists():
            stat = Path(part).stat()
            digest.update(f"{Path(part).resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        else:
            digest.update(json.dumps(part, default=str).encode())
    return digest.hexdigest()[:16]


def soundtrack(job: GenerationJob, files: dict):
    """(blocks, sample rate) of the audio to put in the mp4: the original mix, or the sum of the chosen streams."""
    if tuple(job.mux) == ("mix",):
        return iter_audio_blocks(job.audio), probe_audio(job.audio).sample_rate
    chosen = [files[name] for name in job.mux if name in files]
    if not chosen:
        raise ConfigError(f"none of the streams {list(job.mux)} exist in this job; choose from {sorted(files)} for --mux")
    rate = probe_audio(chosen[0]).sample_rate
    return _summed([iter_audio_blocks(path, sample_rate=rate) for path in chosen]), rate


def _summed(streams):
    """Block-by-block sum of several streams of (C, n) blocks (mono is widened to stereo)."""
    pending = [torch.zeros(2, 0) for _ in streams]
    while True:
        for index, stream in enumerate(streams):
            while stream is not None and pending[index].shape[1] < 48000:
                block = next(stream, None)
                if block is None:
                    streams[index] = stream = None
                else:
                    pending[index] = torch.cat([pending[index], block.expand(2, -1) if block.shape[0] == 1 else block[:2]], dim=1)
        ready = max(p.shape[1] for p in pending)
        if ready == 0:
            return
        total = torch.zeros(2, ready)
        for index, part in enumerate(pending):
            total[:, :part.shape[1]] += part
            pending[index] = part[:, ready:]
        yield total


def audio_duration(path) -> float:
    """Seconds of sound in a file, counted by decoding it (a container's declared duration can be an estimate)."""
    rate = probe_audio(path).sample_rate
    return sum(block.shape[1] for block in iter_audio_blocks(path)) / rate


def _file_identity(job: GenerationJob) -> list:
    paths = [job.files.model, job.files.vae]
    return [(str(Path(p).resolve()), Path(p).stat().st_size if Path(p).is_file() else 0) for p in paths]


def run_job(job: GenerationJob, progress=None, interrupt=None, decode_progress=None) -> Path | None:
    """Run a job end to end, streaming: stems, features and finished segments go to the work folder (a rerun
    resumes from them), the mp4 is encoded segment by segment, so memory does not grow with the audio's length.
    Under torchrun the processes share the denoising and rank 0 does the rest; the others return None.
    `progress(step, total)` counts sampler steps, `decode_progress(done, total)` each segment's decoder slices."""
    _, plan = validate_job(job)
    if plan.size == 1:
        return _make_video(job, progress, interrupt, decode_progress=decode_progress)
    parallel = start_processes(plan, job.memory.device)
    if not parallel.is_leader:
        _serve(job, parallel, interrupt)
        return None
    try:
        return _make_video(job, progress, interrupt, parallel, decode_progress)
    finally:
        parallel.finish()


def _make_video(job: GenerationJob, progress, interrupt, parallel: ParallelRun | None = None,
                decode_progress=None) -> Path:
    work = job.segment_folder
    work.mkdir(parents=True, exist_ok=True)
    files, flags = separate(job, work)
    job = with_found_speakers(job, files)
    features = audio_features(job, files, flags, work)
    scaled = features.scaled(stream_strengths(job.strengths, features.per_stream))
    request = RenderRequest(encode_text(job), job.schedule, scaled, audio_duration(job.audio), job.start_image)

    model, memory, swap = _load_transformer(job, parallel)
    vae = load_vae(job.files.vae, dtype=job.dtype)
    session = RenderSession(model, vae, job.config, memory, swap, progress, interrupt, _file_identity(job), parallel,
                            decode_progress=decode_progress)
    audio, rate = soundtrack(job, files)
    path = session.write(request, job.out, audio, rate, work, keep=job.keep_segments)
    if not job.keep_segments:
        _remove_work_files(work)
    return path


def _load_transformer(job: GenerationJob, parallel: ParallelRun | None):
    memory = job.memory if parallel is None else replace(job.memory, device=parallel.device)
    model = load_mtv_model(job.files.model, dtype=job.dtype)
    swap = prepare_model(model, memory)
    if parallel is not None:
        parallel.install(model)
    return model, memory, swap


def _serve(job: GenerationJob, parallel: ParallelRun, interrupt) -> None:
    """A process other than rank 0: denoise each segment rank 0 sends, until it says there are no more."""
    model, memory, swap = _load_transformer(job, parallel)
    while (segment := parallel.share(None)) is not None:
        denoise(model, segment, job.config, memory, swap, interrupt=interrupt, parallel=parallel)
    parallel.finish()


def _remove_work_files(work: Path) -> None:
    """The stems and features this job wrote into its work folder; the folder too when nothing else is in it."""
    for path in work.glob("stems-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in work.glob("features-*.safetensors"):
        path.unlink(missing_ok=True)
    try:
        work.rmdir()
    except OSError:
        pass
