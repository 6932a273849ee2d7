"""Audio nodes: Load Audio, Demix Stems, Stems From Audio, Encode wav2vec."""

from __future__ import annotations

from mtv_core.spec import EFFECTS, MUSIC, SPEECH, STEMS

from . import comfy_adapter as comfy
from .payloads import EncodedAudio


def node_error(node: str, input_name: str, error: Exception) -> Exception:
    """Name the node and the input in front of mtv_core's message (which already says what to do)."""
    from mtv_core.errors import MTVError

    return type(error)(f"{node}: input '{input_name}': {error}") if isinstance(error, MTVError) else error


class MTVLoadAudio:
    DESCRIPTION = ("Loads audio from a file in ComfyUI's input folder (any common audio file, or a video's audio track), "
                   "with a player and an upload button; start and duration trim it.")
    CATEGORY = "MTV audio-sync/audio"
    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            # The file list comes last: saved workflows store widget values by position.
            "required": {
                "start_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e6, "step": 0.01, "tooltip": "Where to start reading."}),
                "duration_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e6, "step": 0.01, "tooltip": "How much to read; 0 reads to the end."}),
                "audio": (comfy.input_files(), {"audio_upload": True, "tooltip": "wav, flac, mp3, ogg/opus, m4a/aac, or a video (mp4, mov, mkv, webm)."}),
            },
            # The frontend's upload button needs an audio player widget, which it builds only for core audio nodes
            # unless the node asks for one; the player is display only (the frontend sends "" or nothing).
            "optional": {"audioUI": ("AUDIO_UI", {"tooltip": "Plays the chosen file."})},
        }

    @classmethod
    def IS_CHANGED(cls, audio, start_seconds, duration_seconds, audioUI=None):
        from mtv_core.fileio import file_sha256

        return f"{file_sha256(comfy.input_path(audio))}|{start_seconds}|{duration_seconds}"

    @classmethod
    def VALIDATE_INPUTS(cls, audio):
        """Only `audio` is named, so ComfyUI still checks start/duration against their min and max itself."""
        found = comfy.check_input_file(audio)
        if found is not True:
            return found
        from mtv_core.audio import probe_audio
        from mtv_core.errors import MTVError

        try:
            probe_audio(comfy.input_path(audio))
        except MTVError as error:
            return str(error)
        return True

    def load(self, start_seconds, duration_seconds, audio, audioUI=None):
        from mtv_core.audio import load_audio, probe_audio
        from mtv_core.errors import AudioInputError

        try:
            path = comfy.input_path(audio)
            length = probe_audio(path).declared_duration
        except Exception as error:
            raise node_error("MTV Load Audio", "audio", error)
        if length is not None and start_seconds >= length:
            raise node_error("MTV Load Audio", "start_seconds", AudioInputError(
                f"start {start_seconds:g} s is at or past the end of {audio!r} ({length:.2f} s); choose an earlier start"))
        try:
            waveform = load_audio(path, start=start_seconds, duration=duration_seconds or None)
        except Exception as error:
            raise node_error("MTV Load Audio", "audio", error)
        return (comfy.to_comfy_audio(waveform),)


def _stem_outputs(stems):
    return tuple(comfy.to_comfy_audio(stems.waveform(name)) for name in STEMS)


def _with_second_speaker(stems, speaker_ranges: str, second_speaker):
    from mtv_core.audio import add_second_speaker, split_speakers

    if speaker_ranges.strip():
        return split_speakers(stems, speaker_ranges)
    return stems if second_speaker is None else add_second_speaker(stems, comfy.from_comfy_audio(second_speaker))


_SPEAKER_INPUTS = {
    "speaker_ranges": ("STRING", {"default": "", "tooltip": "Two speakers in one speech stem: who speaks when, e.g. '0-2.5:1, 2.5-5:2' (seconds:speaker). Empty: one speaker."}),
    "second_speaker": ("AUDIO", {"tooltip": "Or the second speaker's own recording (for the multi model)."}),
}


class MTVDemixStems:
    DESCRIPTION = "Splits audio into speech, effects and music with an HTDemucs model; each stem also comes out as AUDIO to preview or save."
    CATEGORY = "MTV audio-sync/audio"
    RETURN_TYPES = ("MTV_STEMS", "AUDIO", "AUDIO", "AUDIO")
    RETURN_NAMES = ("stems", *STEMS)
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
        try:
            stems = demixer.separate(comfy.from_comfy_audio(audio), progress=comfy.progress_and_interrupt(100))
            stems = _with_second_speaker(stems, speaker_ranges, second_speaker)
        except Exception as error:
            raise node_error("MTV Demix Stems", "audio", error)
        return (stems, *_stem_outputs(stems))


class MTVStemsFromAudio:
    DESCRIPTION = "Uses stems you separated yourself (no demixing). Absent stems become silence, as the official pipeline feeds."
    CATEGORY = "MTV audio-sync/audio"
    RETURN_TYPES = ("MTV_STEMS",)
    RETURN_NAMES = ("stems",)
    FUNCTION = "combine"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {SPEECH: ("AUDIO", {"tooltip": "The dialogue stem (silence if nobody speaks)."})},
            "optional": {
                EFFECTS: ("AUDIO", {"tooltip": "The sound-effects stem."}),
                MUSIC: ("AUDIO", {"tooltip": "The music stem."}),
                **_SPEAKER_INPUTS,
            },
        }

    def combine(self, speech, effects=None, music=None, speaker_ranges="", second_speaker=None):
        from mtv_core.audio import stems_from_waveforms

        given = {name: audio for name, audio in zip(STEMS, (speech, effects, music)) if audio is not None}
        try:
            stems = stems_from_waveforms({name: comfy.from_comfy_audio(audio) for name, audio in given.items()})
            stems = _with_second_speaker(stems, speaker_ranges, second_speaker)
        except Exception as error:
            raise node_error("MTV Stems From Audio", SPEECH, error)
        return (stems,)


class MTVEncodeWav2Vec:
    DESCRIPTION = "Encodes each stem with wav2vec2 at the video frame rate (24 fps), exactly as the MTV weights were trained (12 layers, 5-frame window)."
    CATEGORY = "MTV audio-sync/audio"
    RETURN_TYPES = ("MTV_AUDIO_FEATURES",)
    RETURN_NAMES = ("audio_features",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "stems": ("MTV_STEMS", {"tooltip": "From Demix Stems or Stems From Audio."}),
                "wav2vec": ("MTV_WAV2VEC", {"tooltip": "From MTV wav2vec2 Loader."}),
            }
        }

    def encode(self, stems, wav2vec):
        from mtv_core.audio import encode_stems

        comfy.use_models([wav2vec.model])  # without ComfyUI it stays on the CPU, where its loader put it
        try:
            features = encode_stems(stems, wav2vec, progress=comfy.progress_and_interrupt(len(stems.tracks)))
        except Exception as error:
            raise node_error("MTV Encode wav2vec", "stems", error)
        return (EncodedAudio(features, stems.duration),)
