"""Audio nodes: Load Audio, Demix Stems, Stems From Audio, Encode wav2vec."""

from __future__ import annotations

import hashlib

from . import comfy_adapter as comfy
from .payloads import EncodedAudio

STEM_OUTPUTS = ("speech", "effects", "music")


def node_error(node: str, input_name: str, error: Exception) -> Exception:
    """Name the node and the input in front of mtv_core's message (which already says what to do)."""
    from mtv_core.errors import MTVError

    return type(error)(f"{node}: input '{input_name}': {error}") if isinstance(error, MTVError) else error


class MTVLoadAudio:
    DESCRIPTION = "Loads audio from a file in ComfyUI's input folder: any common audio file, or a video's audio track."
    CATEGORY = "MTV/audio"
    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            # The file list comes last: its upload button is a widget of its own, and saved workflows
            # store widget values by position.
            "required": {
                "start_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e6, "step": 0.01, "tooltip": "Where to start reading."}),
                "duration_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e6, "step": 0.01, "tooltip": "How much to read; 0 reads to the end."}),
                "audio": (comfy.input_files(), {"audio_upload": True, "tooltip": "wav, flac, mp3, ogg/opus, m4a/aac, or a video (mp4, mov, mkv, webm)."}),
            }
        }

    @classmethod
    def IS_CHANGED(cls, start_seconds, duration_seconds, audio):
        digest = hashlib.sha256()
        with open(comfy.input_path(audio), "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return f"{digest.hexdigest()}|{start_seconds}|{duration_seconds}"

    @classmethod
    def VALIDATE_INPUTS(cls, audio, **_):
        return True if comfy.input_path(audio).is_file() else f"audio file not found: {audio}; upload it or put it in ComfyUI's input folder"

    def load(self, start_seconds, duration_seconds, audio):
        from mtv_core.audio import load_audio, to_comfy_audio

        try:
            waveform = load_audio(comfy.input_path(audio), start=start_seconds, duration=duration_seconds or None)
        except Exception as error:
            raise node_error("MTV Load Audio", "audio", error)
        return (to_comfy_audio(waveform),)


def _stem_outputs(stems):
    from mtv_core.audio import to_comfy_audio

    return tuple(to_comfy_audio(stems.waveform(name)) for name in STEM_OUTPUTS)


def _with_second_speaker(stems, speaker_ranges: str, second_speaker):
    from mtv_core.audio import align_tracks, from_comfy_audio, resample, split_speakers

    if speaker_ranges.strip():
        return split_speakers(stems, speaker_ranges)
    if second_speaker is None:
        return stems
    second = from_comfy_audio(second_speaker)
    samples = resample(second.samples, second.sample_rate, stems.sample_rate)
    channels = stems.tracks["speech"].shape[0]
    if samples.shape[0] != channels:
        samples = samples.mean(0, keepdim=True).expand(channels, -1)
    aligned = align_tracks(dict(stems.tracks, speech2=samples), stems.sample_rate)
    aligned.source_id, aligned.flags = stems.source_id, stems.flags
    return aligned


_SPEAKER_INPUTS = {
    "speaker_ranges": ("STRING", {"default": "", "tooltip": "Two speakers in one speech stem: who speaks when, e.g. '0-2.5:1, 2.5-5:2' (seconds:speaker). Empty: one speaker."}),
    "second_speaker": ("AUDIO", {"tooltip": "Or the second speaker's own recording (for the multi model)."}),
}


class MTVDemixStems:
    DESCRIPTION = "Splits audio into speech, effects and music with an HTDemucs model; each stem also comes out as AUDIO to preview or save."
    CATEGORY = "MTV/audio"
    RETURN_TYPES = ("MTV_STEMS", "AUDIO", "AUDIO", "AUDIO")
    RETURN_NAMES = ("stems", "speech", "effects", "music")
    FUNCTION = "demix"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "audio": ("AUDIO", {"tooltip": "The soundtrack to split."}),
                "demixer": ("MTV_DEMIXER", {"tooltip": "From MTV Demixer Loader."}),
            },
            "optional": dict(_SPEAKER_INPUTS),
        }

    def demix(self, audio, demixer, speaker_ranges="", second_speaker=None):
        from mtv_core.audio import from_comfy_audio

        try:
            stems = demixer.separate(from_comfy_audio(audio), progress=comfy.progress_and_interrupt(100))
            stems = _with_second_speaker(stems, speaker_ranges, second_speaker)
        except Exception as error:
            raise node_error("MTV Demix Stems", "audio", error)
        return (stems, *_stem_outputs(stems))


class MTVStemsFromAudio:
    DESCRIPTION = "Uses stems you separated yourself (no demixing). Absent stems become silence, as the official pipeline feeds."
    CATEGORY = "MTV/audio"
    RETURN_TYPES = ("MTV_STEMS",)
    RETURN_NAMES = ("stems",)
    FUNCTION = "combine"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"speech": ("AUDIO", {"tooltip": "The dialogue stem (silence if nobody speaks)."})},
            "optional": {
                "effects": ("AUDIO", {"tooltip": "The sound-effects stem."}),
                "music": ("AUDIO", {"tooltip": "The music stem."}),
                **_SPEAKER_INPUTS,
            },
        }

    def combine(self, speech, effects=None, music=None, speaker_ranges="", second_speaker=None):
        import torch

        from mtv_core.audio import align_tracks, content_hash, from_comfy_audio, resample

        try:
            first = from_comfy_audio(speech)
            tracks, flags = {"speech": first.samples}, {}
            for name, audio in (("effects", effects), ("music", music)):
                if audio is None:
                    tracks[name], flags[name] = torch.zeros_like(first.samples), "not given"
                else:
                    other = from_comfy_audio(audio)
                    tracks[name] = resample(other.samples, other.sample_rate, first.sample_rate)
            stems = align_tracks(tracks, first.sample_rate)
            stems.source_id, stems.flags = content_hash(first.samples, first.sample_rate), flags
            stems = _with_second_speaker(stems, speaker_ranges, second_speaker)
        except Exception as error:
            raise node_error("MTV Stems From Audio", "speech", error)
        return (stems,)


class MTVEncodeWav2Vec:
    DESCRIPTION = "Encodes each stem with wav2vec2 at the video frame rate, exactly as the MTV weights were trained (12 layers, 5-frame window)."
    CATEGORY = "MTV/audio"
    RETURN_TYPES = ("MTV_AUDIO_FEATURES",)
    RETURN_NAMES = ("audio_features",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "stems": ("MTV_STEMS", {"tooltip": "From Demix Stems or Stems From Audio."}),
                "wav2vec": ("MTV_WAV2VEC", {"tooltip": "From MTV wav2vec2 Loader."}),
                "fps": ("FLOAT", {"default": 24.0, "min": 24.0, "max": 24.0, "tooltip": "Video frame rate; the MTV models work at 24 fps."}),
            }
        }

    def encode(self, stems, wav2vec, fps):
        from mtv_core.audio import encode_stems

        try:
            features = encode_stems(stems, wav2vec, fps=fps, progress=comfy.progress_and_interrupt(len(stems.tracks)))
        except Exception as error:
            raise node_error("MTV Encode wav2vec", "stems", error)
        return (EncodedAudio(features, stems.duration),)
