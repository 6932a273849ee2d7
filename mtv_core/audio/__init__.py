"""Audio front-end: decoding, demixing into stems, levels, and wav2vec2 features at the video frame rate. The
demixer and wav2vec2 files are loaded by `mtv_core.checkpoints`.

Importing this package loads torch but neither demucs, transformers, silero-vad nor resemblyzer; those load when
first used.
"""

from .demix import Demixer
from .diarize import Diarization, diarize, diarize_file, require_speaker_models, split_found_speakers
from .features import AudioFeatures, encode_stems
from .io import Waveform, iter_audio_blocks, load_audio, probe_audio, save_wav, to_mono, to_stereo
from .levels import (
    LevelMeter,
    LevelReport,
    is_silent,
    measure,
    normalize_loudness,
    peak_dbfs,
    rms_dbfs,
    windowed_rms_dbfs,
)
from .resample import StreamResampler, resample
from .speakers import add_second_speaker, format_speaker_ranges, parse_speaker_ranges, split_speakers
from .stems import ContentHasher, Stems, align_streams, content_hash, stems_from_files, stems_from_waveforms
from .wav2vec import Wav2Vec2Encoder, encode_waveform, frame_count, padded_frame_count

__all__ = [
    "AudioFeatures", "ContentHasher", "Demixer", "Diarization", "LevelMeter", "LevelReport", "Stems", "StreamResampler", "Wav2Vec2Encoder", "Waveform",
    "add_second_speaker", "align_streams", "content_hash", "diarize", "diarize_file", "encode_stems", "encode_waveform",
    "format_speaker_ranges", "frame_count",
    "is_silent", "iter_audio_blocks", "load_audio", "measure",
    "normalize_loudness", "padded_frame_count", "parse_speaker_ranges", "peak_dbfs", "probe_audio", "require_speaker_models", "resample",
    "rms_dbfs", "save_wav", "split_found_speakers", "split_speakers", "stems_from_files", "stems_from_waveforms", "to_mono", "to_stereo", "windowed_rms_dbfs",
]
