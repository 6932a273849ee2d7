"""Audio nodes: Load Audio, Demix Stems, Stems From Audio, Encode wav2vec."""

from __future__ import annotations

import logging

from mtv_core.audio import (
    add_second_speaker,
    encode_stems,
    load_audio,
    probe_audio,
    split_found_speakers,
    split_speakers,
    stems_from_waveforms,
)
from mtv_core.audio.speakers import is_auto
from mtv_core.errors import AudioInputError, MTVError
from mtv_core.fileio import file_sha256
from mtv_core.spec import EFFECTS, MUSIC, SPEECH, SPEECH_GATE_DBFS, STEMS

from . import folders
from .comfy_adapter import Node, from_comfy_audio, node_error, node_errors, to_comfy_audio
from .model_management import use_models
from .payloads import EncodedAudio
from .progress import progress_and_interrupt


def _audio_files() -> list[str]:
    folders.place_shipped_inputs()  # before the list is shown, so the player can fetch a shipped example
    return folders.input_files()


class MTVLoadAudio(Node, menu="audio", function="load", outputs={"audio": "AUDIO"}):
    DESCRIPTION = ("Loads audio from a file in ComfyUI's input folder (any common audio file, or a video's audio track), "
                   "with a player and an upload button; start and duration trim it.")
    # The file list comes last: saved workflows store widget values by position.
    REQUIRED = {
        "start_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e6, "step": 0.01, "tooltip": "Where to start reading."}),
        "duration_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e6, "step": 0.01, "tooltip": "How much to read; 0 reads to the end."}),
        "audio": lambda: (_audio_files(), {"audio_upload": True, "tooltip": "wav, flac, mp3, ogg/opus, m4a/aac, or a video (mp4, mov, mkv, webm)."}),
    }
    # The frontend's upload button needs an audio player widget, which it builds only for core audio nodes unless
    # the node asks for one; the player is display only (the frontend sends "" or nothing).
    OPTIONAL = {"audioUI": ("AUDIO_UI", {"tooltip": "Plays the chosen file."})}

    @classmethod
    def IS_CHANGED(cls, audio, start_seconds, duration_seconds, audioUI=None):
        return f"{file_sha256(folders.input_path(audio))}|{start_seconds}|{duration_seconds}"

    @classmethod
    def VALIDATE_INPUTS(cls, audio):
        """Only `audio` is named, so ComfyUI still checks start/duration against their min and max itself."""
        found = folders.check_input_file(audio)
        if found is not True:
            return found
        try:
            probe_audio(folders.input_path(audio))
        except MTVError as error:
            return str(error)
        return True

    def load(self, start_seconds, duration_seconds, audio, audioUI=None):
        with node_errors("MTV Load Audio", "audio"):
            path = folders.input_path(audio)
            length = probe_audio(path).declared_duration
        if length is not None and start_seconds >= length:
            raise node_error("MTV Load Audio", "start_seconds", AudioInputError(
                f"start {start_seconds:g} s is at or past the end of {audio!r} ({length:.2f} s); choose an earlier start"))
        with node_errors("MTV Load Audio", "audio"):
            waveform = load_audio(path, start=start_seconds, duration=duration_seconds or None)
        return (to_comfy_audio(waveform),)


def _stem_outputs(stems):
    return tuple(to_comfy_audio(stems.waveform(name)) for name in STEMS)


def _with_second_speaker(stems, speaker_ranges: str, second_speaker):
    if is_auto(speaker_ranges):
        stems, found = split_found_speakers(stems)
        logging.info("[MTV] speakers: %s", found.summary())
        return stems
    if speaker_ranges.strip():
        return split_speakers(stems, speaker_ranges)
    return stems if second_speaker is None else add_second_speaker(stems, from_comfy_audio(second_speaker))


_SPEAKER_INPUTS = {
    "speaker_ranges": ("STRING", {"default": "", "tooltip": "Two speakers in one speech stem: who speaks when, e.g. '0-2.5:1, 2.5-5:2' (seconds:speaker), or 'auto' to find them (needs pip install \"comfyui-mtv[speakers]\"; the ranges found go to the console log, to copy here and correct). Empty: one speaker."}),
    "second_speaker": ("AUDIO", {"tooltip": "Or the second speaker's own recording (for the multi model)."}),
}


class MTVDemixStems(Node, menu="audio", function="demix", outputs={"stems": "MTV_STEMS", **dict.fromkeys(STEMS, "AUDIO")}):
    DESCRIPTION = "Splits audio into speech, effects and music with an HTDemucs model; each stem also comes out as AUDIO to preview or save."
    REQUIRED = {
        "audio": ("AUDIO", {"tooltip": "The soundtrack to split."}),
        "demixer": ("MTV_DEMIXER", {"tooltip": "From MTV Demixer Loader."}),
    }
    OPTIONAL = {  # new widgets go last: a saved workflow gives its widget values in order
        **_SPEAKER_INPUTS,
        "speech_gate_dbfs": ("FLOAT", {"default": SPEECH_GATE_DBFS, "min": -200.0, "max": 0.0, "step": 1.0, "tooltip": "Silences the speech stem where it stays quieter than this, so what the demixer leaks into it between lines (music, effects) does not move mouths. -200 keeps the stem as separated."}),
    }

    @node_errors("MTV Demix Stems", "audio")
    def demix(self, audio, demixer, speaker_ranges="", second_speaker=None, speech_gate_dbfs=SPEECH_GATE_DBFS):
        stems = demixer.separate(from_comfy_audio(audio), progress=progress_and_interrupt(100), speech_gate_dbfs=speech_gate_dbfs)
        stems = _with_second_speaker(stems, speaker_ranges, second_speaker)
        return (stems, *_stem_outputs(stems))


class MTVStemsFromAudio(Node, menu="audio", function="combine", outputs={"stems": "MTV_STEMS"}):
    DESCRIPTION = "Uses stems you separated yourself (no demixing). Absent stems become silence, as the official pipeline feeds."
    REQUIRED = {SPEECH: ("AUDIO", {"tooltip": "The dialogue stem (silence if nobody speaks)."})}
    OPTIONAL = {
        EFFECTS: ("AUDIO", {"tooltip": "The sound-effects stem."}),
        MUSIC: ("AUDIO", {"tooltip": "The music stem."}),
        **_SPEAKER_INPUTS,
    }

    @node_errors("MTV Stems From Audio", SPEECH)
    def combine(self, speech, effects=None, music=None, speaker_ranges="", second_speaker=None):
        given = {name: audio for name, audio in zip(STEMS, (speech, effects, music)) if audio is not None}
        stems = stems_from_waveforms({name: from_comfy_audio(audio) for name, audio in given.items()})
        return (_with_second_speaker(stems, speaker_ranges, second_speaker),)


class MTVEncodeWav2Vec(Node, menu="audio", function="encode", outputs={"audio_features": "MTV_AUDIO_FEATURES"}):
    DESCRIPTION = "Encodes each stem with wav2vec2 at the video frame rate (24 fps), exactly as the MTV weights were trained (12 layers, 5-frame window)."
    REQUIRED = {
        "stems": ("MTV_STEMS", {"tooltip": "From Demix Stems or Stems From Audio."}),
        "wav2vec": ("MTV_WAV2VEC", {"tooltip": "From MTV wav2vec2 Loader."}),
    }

    def encode(self, stems, wav2vec):
        use_models([wav2vec.model])  # without ComfyUI it stays on the CPU, where its loader put it
        with node_errors("MTV Encode wav2vec", "stems"):
            features = encode_stems(stems, wav2vec, progress=progress_and_interrupt(len(stems.streams)))
        return (EncodedAudio(features, stems.duration),)
