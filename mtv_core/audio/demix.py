"""Demixing into speech / effects / music with HTDemucs models, in streamed overlapping chunks.

Chunking reproduces `demucs.apply.apply_model(model, mix, shifts=0, split=True, overlap=overlap)`:
segments of the model's training length at a stride of (1 - overlap) of it, triangular cross-fade
weights, and the last, short segments padded with their real neighbours. So a streamed run equals
a whole-file run to float tolerance while holding only a few segments in memory. The official MTV
data preparation used shifts=1 (a random time shift); shifts are left out here to stay deterministic.
Demixer files are read and written by `mtv_core.checkpoints.demixer`.
"""

import json
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import torch

from ..errors import ConfigError
from ..fileio import FolderLock
from ..spec import EFFECTS, MUSIC, SPEECH, SPEECH_GATE_DBFS, STEMS
from .gate import speech_gate
from .io import Waveform, WavWriter, downmix_matrix, iter_audio_blocks, probe_audio, to_stereo, write_text_atomically
from .levels import DEFAULT_SILENCE_DBFS, LevelMeter
from .resample import StreamResampler, resample
from .stems import ContentHasher, Stems, content_hash

CINEMATIC_SOURCES = ("music", "effect", "dialog")  # MVSEP-CDX23 output order
_CINEMATIC_TRACKS = {"dialog": SPEECH, "effect": EFFECTS, "music": MUSIC}

ProgressCallback = Callable[[int, int], None]


class Demixer:
    """One HTDemucs model, or the mean of several of one layout, mapped to MTV's stems.

    Layouts: "cinematic" (sources music, effect, dialog as in MVSEP-CDX23) and "music" (a standard
    4- or 6-stem htdemucs: vocals -> speech, every other source -> music, effects empty and flagged).
    """
    def __init__(self, models: list, overlap: float = 0.25, device="cpu"):
        if not models:
            raise ConfigError("a Demixer needs at least one model.")
        if not 0 <= overlap < 1:
            raise ConfigError(f"overlap {overlap} is out of range; use 0 <= overlap < 1 (demucs default 0.25, official MTV 0.8).")
        first = models[0]
        for model in models[1:]:
            if list(model.sources) != list(first.sources) or model.samplerate != first.samplerate:
                raise ConfigError(f"demixer models disagree: sources {model.sources} at {model.samplerate} Hz vs {first.sources} at {first.samplerate} Hz; average only models of one layout.")
            if int(model.segment * model.samplerate) != int(first.segment * first.samplerate):
                raise ConfigError("demixer models have different segment lengths; run them separately.")
        self.models = [model.to(device).eval() for model in models]
        self.device = torch.device(device)
        self.sources = list(first.sources)
        self.sample_rate = int(first.samplerate)
        self.segment_length = int(first.segment * first.samplerate)
        self.stride = max(1, int((1 - overlap) * self.segment_length))
        self.layout, self._track_sources = track_mapping(self.sources)

    @property
    def flags(self) -> dict:
        return {} if self.layout == "cinematic" else {EFFECTS: "not separated: a standard music model has no effects stem"}

    def separate(self, waveform: Waveform, progress: Optional[ProgressCallback] = None, block_seconds: float = 30.0,
                 speech_gate_dbfs: Optional[float] = SPEECH_GATE_DBFS) -> Stems:
        """Demixes a whole waveform; stems come at the model's rate (44.1 kHz for HTDemucs), stereo."""
        source_id = content_hash(waveform.samples, waveform.sample_rate)
        mix = resample(to_stereo(waveform).samples, waveform.sample_rate, self.sample_rate)
        total = mix.shape[1]
        tracks = {name: torch.empty(2, total) for name in STEMS}
        block = max(1, int(block_seconds * self.sample_rate))
        position = 0
        blocks = (mix[:, i:i + block] for i in range(0, total, block))
        for stem_block in self.separate_stream(blocks, total, progress, speech_gate_dbfs):
            length = next(iter(stem_block.values())).shape[1]
            for name, samples in stem_block.items():
                tracks[name][:, position:position + length] = samples
            position += length
        return Stems(tracks, self.sample_rate, source_id, self.flags)

    def separate_stream(self, blocks: Iterable[torch.Tensor], expected_total: int = 0, progress: Optional[ProgressCallback] = None,
                        speech_gate_dbfs: Optional[float] = SPEECH_GATE_DBFS) -> Iterator[dict]:
        """Demixes stereo blocks at `sample_rate` as they come; yields {track: [2, n]} blocks in order. The speech
        track is silenced where it stays below `speech_gate_dbfs` (`gate`); None or -200 dBFS keeps it as separated."""
        gate = speech_gate(self.sample_rate, speech_gate_dbfs)
        for sources_block in self._overlap_add(blocks, expected_total, progress):
            tracks = self._to_tracks(sources_block)
            if gate is not None:
                tracks[SPEECH] = gate(tracks[SPEECH])
            yield tracks

    def _overlap_add(self, blocks, expected_total, progress) -> Iterator[torch.Tensor]:
        length, stride = self.segment_length, self.stride
        weight = _transition_weight(length)
        num_sources = len(self.sources)
        buffer, buffer_start = torch.zeros(2, 0), 0  # input samples [buffer_start, buffer_start + len)
        accumulated = torch.zeros(num_sources, 2, 0)  # weighted sums for output samples from next_output
        weights = torch.zeros(0)
        next_offset = next_output = 0
        total = 0
        for block in blocks:
            buffer = torch.cat([buffer, block.to(torch.float32)], dim=1)
            total += block.shape[1]
            while next_offset + length <= total:
                chunk = buffer[:, next_offset - buffer_start:next_offset - buffer_start + length]
                accumulated, weights = _accumulate(accumulated, weights, self._run(chunk), weight, next_offset - next_output)
                next_offset += stride
                self._report(progress, next_offset, max(expected_total, total))
            ready = next_offset - next_output
            if ready > 0:
                yield accumulated[..., :ready] / weights[:ready]
                accumulated, weights, next_output = accumulated[..., ready:], weights[ready:], next_offset
            keep_from = max(0, next_offset - length)
            buffer, buffer_start = buffer[:, keep_from - buffer_start:], keep_from
        while next_offset < total:
            chunk_length = total - next_offset
            chunk = _padded_chunk(buffer, buffer_start, next_offset, chunk_length, length, total)
            delta = length - chunk_length
            output = self._run(chunk)[..., delta // 2:delta // 2 + chunk_length]
            accumulated, weights = _accumulate(accumulated, weights, output, weight[:chunk_length], next_offset - next_output)
            next_offset += stride
        self._report(progress, total, total)
        if total > next_output:
            yield accumulated[..., : total - next_output] / weights[: total - next_output]

    @torch.no_grad()
    def _run(self, chunk: torch.Tensor) -> torch.Tensor:
        chunk = chunk[None].to(self.device)
        outputs = sum(model(chunk)[0].float() for model in self.models)
        return (outputs / len(self.models)).cpu()

    def _to_tracks(self, sources_block: torch.Tensor) -> dict:
        tracks = {}
        for track, indices in self._track_sources.items():
            tracks[track] = sources_block[indices].sum(dim=0) if indices else torch.zeros_like(sources_block[0])
        return tracks

    @staticmethod
    def _report(progress, done, total):
        if progress is not None:
            progress(min(done, total), total)


def track_mapping(sources) -> tuple:
    """Maps model source names to MTV tracks: returns (layout, {track: [source indices]})."""
    names = [str(name).lower() for name in sources]
    if set(names) == set(CINEMATIC_SOURCES) or (len(names) == 3 and "vocals" not in names):
        order = names if set(names) == set(CINEMATIC_SOURCES) else list(CINEMATIC_SOURCES)
        return "cinematic", {_CINEMATIC_TRACKS[name]: [index] for index, name in enumerate(order)}
    if "vocals" in names:
        speech = names.index("vocals")
        return "music", {SPEECH: [speech], EFFECTS: [], MUSIC: [i for i in range(len(names)) if i != speech]}
    raise ConfigError(f"demixer sources {list(sources)} match no known layout; use a cinematic (music, effect, dialog) or a standard htdemucs (with vocals) model.")


def _transition_weight(length: int) -> torch.Tensor:
    weight = torch.cat([torch.arange(1, length // 2 + 1), torch.arange(length - length // 2, 0, -1)]).float()
    return weight / weight.max()


def _accumulate(accumulated, weights, output, weight, at):
    """Adds `weight * output` at position `at` of the accumulators, growing them as needed."""
    end = at + output.shape[-1]
    if end > weights.shape[0]:
        grow = end - weights.shape[0]
        accumulated = torch.cat([accumulated, accumulated.new_zeros(*accumulated.shape[:-1], grow)], dim=-1)
        weights = torch.cat([weights, weights.new_zeros(grow)])
    accumulated[..., at:end] += weight * output
    weights[at:end] += weight
    return accumulated, weights


def _padded_chunk(buffer, buffer_start, offset, chunk_length, length, total):
    """The model input for a final short chunk: centred in `length` with real neighbours, zeros past the ends."""
    start = offset - (length - chunk_length) // 2
    real_start, real_end = max(0, start), min(total, start + length)
    real = buffer[:, real_start - buffer_start:real_end - buffer_start]
    return torch.nn.functional.pad(real, (real_start - start, start + length - real_end))


STEM_FILES = {name: f"{name}.wav" for name in STEMS}
REPORT_FILE = "report.json"


def demix_to_files(path, demixer: Demixer, out_folder, start: float = 0.0, duration: Optional[float] = None,
                   silence_dbfs: float = DEFAULT_SILENCE_DBFS, progress: Optional[ProgressCallback] = None,
                   speech_gate_dbfs: Optional[float] = SPEECH_GATE_DBFS) -> dict:
    """Demix an audio or video file into speech.wav, effects.wav and music.wav (32-bit float, the model's rate)
    and report.json in `out_folder`, decoding, demixing and writing block by block: memory does not grow with the
    file's length. The folder is locked while this runs; temporary files a killed run left behind are removed
    first; the files appear only when whole."""

    out_folder = Path(out_folder)
    out_folder.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out_folder, "the stems folder")
    try:
        _remove_partial_files(out_folder)
        info = probe_audio(path)
        hasher = ContentHasher(info.sample_rate)
        resampler = StreamResampler(info.sample_rate, demixer.sample_rate)
        matrix = downmix_matrix(info.channel_names) if info.num_channels > 2 else None
        expected = round((duration or max(0.0, (info.declared_duration or 0.0) - start)) * demixer.sample_rate)

        def stereo_blocks():
            for block in iter_audio_blocks(path, start, duration):
                hasher.update(block)
                stereo = block.expand(2, -1) if block.shape[0] == 1 else block if matrix is None else matrix @ block
                yield resampler.push(stereo)
            yield resampler.flush().reshape(2, -1)

        meters = {name: LevelMeter(demixer.sample_rate, silence_dbfs) for name in STEM_FILES}
        writers = {}
        try:
            for name, file in STEM_FILES.items():
                writers[name] = WavWriter(out_folder / file, demixer.sample_rate, 2)
            for stem_block in demixer.separate_stream(stereo_blocks(), expected, progress, speech_gate_dbfs):
                for name in STEM_FILES:
                    writers[name].write(stem_block[name])
                    meters[name].update(stem_block[name])
        except BaseException:  # a stop (Ctrl-C, SIGTERM) at any point, even while the writers open, leaves no part
            for writer in writers.values():
                writer.abort()
            _remove_partial_files(out_folder)
            raise
        for writer in writers.values():
            writer.close()
        seconds = writers[SPEECH].num_frames / demixer.sample_rate
        report = {"input": str(Path(path).resolve()), "layout": demixer.layout, "source_id": hasher.hexdigest(),
                  "duration": seconds, "sample_rate": demixer.sample_rate, "speech_gate_dbfs": speech_gate_dbfs,
                  "stems": {name: dict(meters[name].report().as_dict(), file=file, flag=demixer.flags.get(name))
                            for name, file in STEM_FILES.items()}}
        write_text_atomically(out_folder / REPORT_FILE, json.dumps(report, indent=2))
        return report
    finally:
        lock.release()


def _remove_partial_files(out_folder: Path) -> None:
    """This command's temporary files in its (locked) output folder: left by a stop or a kill."""
    for name in (*STEM_FILES.values(), REPORT_FILE):
        for partial in out_folder.glob(f".{name}.*.tmp"):
            partial.unlink(missing_ok=True)
