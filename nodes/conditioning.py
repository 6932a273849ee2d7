"""Conditioning nodes: MTV Text Encode, Scene Transition, MST-ControlNet Apply."""

from __future__ import annotations

import torch

from mtv_core.errors import ConfigError
from mtv_core.pipeline.captions import build_caption
from mtv_core.pipeline.guidance import GuidanceScales, parse_until
from mtv_core.pipeline.prompt_schedule import PromptSchedule, ScheduledPrompt
from mtv_core.pipeline.streams import StreamsMismatch, check_streams_fit, stream_strengths
from mtv_core.spec import EFFECTS, MAX_GUIDANCE, MAX_STRENGTH, MUSIC, OFFICIAL_GUIDANCE, SPEECH

from .comfy_adapter import Node, node_error, node_errors
from .core_clip import encode_with_core_clip
from .model_management import models_on_device
from .payloads import MTVConditioning, TextConditioning

CONVERSATIONS = ["one", "two", "none", "custom"]


class MTVTextEncode(Node, menu="conditioning", function="encode", outputs={"text": "MTV_TEXT", "caption": "STRING"}):
    DESCRIPTION = ("Writes the MTV structured caption (conversation type, persons, active speaker, scene) and encodes it with "
                   "T5 v1.1 XXL (226 tokens): MTV's own T5 folder, or a core Load CLIP holding t5xxl (the file Flux and SD3 use).")
    REQUIRED = {
        "conversation": (CONVERSATIONS, {"default": "one", "tooltip": "one / two person conversation, none (effects or music scenes), or custom (the scene text is the whole caption)."}),
        "scene": ("STRING", {"multiline": True, "default": "", "tooltip": "What the video shows."}),
        "person1": ("STRING", {"default": "", "tooltip": "Person1's appearance and position (one/two)."}),
        "person2": ("STRING", {"default": "", "tooltip": "Person2's appearance and position (two)."}),
        "speaker": ("INT", {"default": 1, "min": 1, "max": 2, "tooltip": "Who is speaking (the caption says 'PersonN is speaking.')."}),
    }
    # t5 was required: it keeps its place as the first socket, so saved workflows stay wired.
    OPTIONAL = {
        "t5": ("MTV_T5", {"tooltip": "From MTV VAE + T5 Loader (a T5 folder). Not needed when 'clip' is connected."}),
        "clip": ("CLIP", {"tooltip": "A core Load CLIP with t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors (type sd3): encodes instead of 't5', with the same 226 tokens."}),
    }

    def encode(self, conversation, scene, person1, person2, speaker, t5=None, clip=None):
        if t5 is None and clip is None:
            raise node_error("MTV Text Encode", "clip", ConfigError(
                "no text encoder: 't5' is not connected or its loader's t5_name is 'none (use a core CLIP)', and 'clip' "
                "is not connected; connect a core Load CLIP (t5xxl_fp16.safetensors, type sd3) to 'clip', or choose a "
                "T5 folder in MTV VAE + T5 Loader and connect its 't5' output"))
        with node_errors("MTV Text Encode", "scene"):
            caption = scene.strip() if conversation == "custom" else build_caption(conversation, scene, person1, person2, speaker)
            schedule = PromptSchedule.single(caption)
        with node_errors("MTV Text Encode", "clip" if clip is not None else "t5"):
            embeddings = encode_with_core_clip(clip, [caption]) if clip is not None else _encode_with_t5(t5, [caption])
        return (TextConditioning(schedule, embeddings), caption)


def _encode_with_t5(t5, prompts):
    with models_on_device([t5.encoder]):
        return t5.encode(prompts)


class MTVSceneTransition(Node, menu="conditioning", function="schedule", outputs={"text": "MTV_TEXT"}):
    DESCRIPTION = "Switches to another prompt at a time, blending the two text embeddings across the transition. Chain several for more scenes."
    REQUIRED = {
        "text": ("MTV_TEXT", {"tooltip": "The prompt (or schedule) so far."}),
        "next_text": ("MTV_TEXT", {"tooltip": "The prompt that takes over."}),
        "start_seconds": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 1e5, "step": 0.1, "tooltip": "When the next prompt starts to take over."}),
        "transition_seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 60.0, "step": 0.1, "tooltip": "How long the blend lasts (0: a cut)."}),
    }

    def schedule(self, text, next_text, start_seconds, transition_seconds):
        added = [ScheduledPrompt(e.prompt, start_seconds + e.start, transition_seconds if i == 0 else e.transition)
                 for i, e in enumerate(next_text.schedule.entries)]
        with node_errors("MTV Scene Transition", "start_seconds"):
            schedule = PromptSchedule(tuple(text.schedule.entries) + tuple(added))
        return (TextConditioning(schedule, torch.cat([text.embeddings, next_text.embeddings])),)


def _strength(what: str) -> tuple:
    return ("FLOAT", {"default": 1.0, "min": 0.0, "max": MAX_STRENGTH, "step": 0.05, "tooltip": f"How strongly {what} drives the video (0 = not at all)."})


def _guidance(what: str) -> tuple:
    return ("FLOAT", {"default": OFFICIAL_GUIDANCE, "min": 0.0, "max": MAX_GUIDANCE, "step": 0.1, "tooltip": f"Guidance for {what} (1 = none; official: {OFFICIAL_GUIDANCE} for all)."})


class MTVApply(Node, menu="conditioning", function="apply", outputs={"conditioning": "MTV_CONDITIONING"}):
    DESCRIPTION = ("MST-ControlNet Apply: joins text and audio features for the MTV model. Strengths scale each stream "
                   "between its null features (0) and full (1); guidance pushes text, lip sync (speech), event timing "
                   f"(effects) and mood (music) separately. All guidance at {OFFICIAL_GUIDANCE} is the official joint guidance.")
    REQUIRED = {
        "mtv_model": ("MTV_MODEL", {"tooltip": "The model these features are for (checks that the streams fit it)."}),
        "text": ("MTV_TEXT", {"tooltip": "From MTV Text Encode or Scene Transition."}),
        "audio_features": ("MTV_AUDIO_FEATURES", {"tooltip": "From MTV Encode wav2vec."}),
        "speech_strength": _strength("speech (lips)"),
        "effects_strength": _strength("effects (event timing)"),
        "music_strength": _strength("music (mood)"),
        "text_guidance": _guidance("the text"),
        "speech_guidance": _guidance(SPEECH),
        "effects_guidance": _guidance(EFFECTS),
        "music_guidance": _guidance(MUSIC),
    }
    OPTIONAL = {
        "silent_guidance": ("FLOAT", {"default": -1.0, "min": -1.0, "max": MAX_GUIDANCE, "step": 0.1, "tooltip": (
            "Guidance for a stream whose stem is silent or absent (-1: the text guidance, as in the official "
            "joint guidance; 1: none, what the demo model samples with).")}),
        "guidance_until": ("STRING", {"default": "", "tooltip": (
            "Guide only the first part of the noise schedule: one fraction for every condition (0.6) or per "
            "condition (speech=0.6, text=0.6, music=0.6). A stopped condition is conditioned but not pushed; with "
            "all stopped a step is one forward. Empty: every step (official). On the demo model's close-ups "
            "speech=0.6, text=0.6, music=0.6 flickered less; on its small figures it lost the lip sync.")}),
        "speech_guidance_in_pauses": ("FLOAT", {"default": -1.0, "min": -1.0, "max": MAX_GUIDANCE, "step": 0.1, "tooltip": (
            "Speech guidance where nobody speaks: in the latent frames whose speech stem stays below -45 dBFS a "
            "quarter second around (-1: the speech guidance everywhere, official). On the demo model's two-minute "
            "close-up 1 held the wall's colour where the default drifted, with the same lip sync; small figures' "
            "mouths moved more in the pauses.")}),
        "speech_pause_keep": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": (
            "With speech_guidance_in_pauses: the share of each pause frame that keeps the speech guidance, where "
            "speech pushes hardest (on the demo model the mouths: 0.1 kept resting mouths nearly as still as the default "
            "and halved the drift). 0: none.")}),
    }

    def apply(self, mtv_model, text, audio_features, speech_strength, effects_strength, music_strength,
              text_guidance, speech_guidance, effects_guidance, music_guidance, silent_guidance=-1.0,
              guidance_until="", speech_guidance_in_pauses=-1.0, speech_pause_keep=0.0):
        check_text_width(mtv_model.model, text.embeddings)
        features, model = audio_features.features, mtv_model.model
        try:
            check_streams_fit(features.per_stream, model.audio_streams, model.config.variant,
                              give_second="give 'speaker_ranges' or a 'second_speaker' in Demix Stems",
                              drop_second="load the multi model, or clear 'speaker_ranges' / 'second_speaker' in Demix Stems")
        except StreamsMismatch as error:
            raise node_error("MST-ControlNet Apply", "mtv_model" if error.extra else "audio_features", error)
        strengths = {SPEECH: speech_strength, EFFECTS: effects_strength, MUSIC: music_strength}
        scaled = features.scaled(stream_strengths(strengths, model.audio_streams))
        with node_errors("MST-ControlNet Apply", "guidance_until"):
            until = parse_until(guidance_until)
        keep_alone = speech_pause_keep and speech_guidance_in_pauses < 0
        with node_errors("MST-ControlNet Apply", "speech_pause_keep" if keep_alone else "text_guidance"):
            scales = GuidanceScales(text_guidance, speech_guidance, effects_guidance, music_guidance,
                                    silent=None if silent_guidance < 0 else silent_guidance, until=until,
                                    speech_in_pauses=None if speech_guidance_in_pauses < 0 else speech_guidance_in_pauses,
                                    speech_pause_keep=speech_pause_keep or None)
        return (MTVConditioning(text, type(audio_features)(scaled, audio_features.duration), scales),)


def check_text_width(model, embeddings) -> None:
    width, wanted = embeddings.shape[-1], model.config.text_embed_dim
    if width != wanted:
        raise ConfigError(
            f"MST-ControlNet Apply: input 'text' holds {width}-wide T5 embeddings but the {model.config.variant} model "
            f"reads {wanted}-wide ones; encode with the T5 it was trained with (T5 v1.1 XXL: 4096; the demo model: "
            "its built-in T5 from MTV VAE + T5 Loader)")
