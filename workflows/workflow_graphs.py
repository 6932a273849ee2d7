"""The eight shipped workflows, each described once: its graph (node id -> class type and inputs), its title in
ComfyUI's template browser, the one line its thumbnail shows and the note that says what to change.
workflows/build.py writes them in both formats."""

from __future__ import annotations

from dataclasses import dataclass

from mtv_core import demo
from mtv_core.pipeline.speed import CACHES
from mtv_core.spec import FPS, GUIDANCE_ORDER, OFFICIAL_GUIDANCE, SPEECH, STEMS
from nodes.comfy_adapter import DEMO_CHOICE as DEMO
from nodes.comfy_adapter import DEMO_WORKFLOW_PREFIX

AUDIO_FILE = "mtv_example.wav"  # the demo's two examples, one after the other (6 s)
KEYFRAME_FILE = "mtv_keyframe.png"  # the first frame of the demo's talking-face example
MODELS = {"single": "mtv_single.safetensors", "multi": "mtv_multi.safetensors", "accm": "mtv_accm.safetensors"}
T5XXL_FILE = "t5xxl_fp16.safetensors"  # read by core Load CLIP (type sd3): the file Flux and SD3 users already have
CORE_CLIP_T5 = "none (use a core CLIP)"
MODEL_FILES = {
    "vae": "models/vae/cogvideox5b_vae.safetensors (converted from the official vae/3d-vae.pt)",
    "t5": f"models/text_encoders/{T5XXL_FILE} (the T5 v1.1 XXL file Flux and SD3 use; or set the VAE + T5 Loader's "
          "t5_name to a t5-v1_1-xxl/ folder and connect its t5 output to Text Encode instead of the clip)",
    "wav2vec": "models/audio_encoders/wav2vec2-base-960h/",
    "demixer": "models/demucs/cdx23_dbb4db15.safetensors (MVSEP-CDX23, `python -m mtv_core convert-demixer`)",
}


@dataclass
class Workflow:
    name: str  # API file name and output prefix
    # UI file name, shown as the title in ComfyUI's template browser: short enough for its card, and after the demo's
    # by name (the browser's A-Z sort; ComfyUI itself serves a pack's templates in directory order)
    title: str
    description: str  # one line, what the result shows: the thumbnail's caption (the template card shows only the title)
    graph: dict  # node id -> (class_type, inputs)
    note: str  # what to change, which model files it needs


# -- graph pieces ---------------------------------------------------------------------------------------------
def loaders(variant: str, demixer: bool = True) -> dict:
    graph = {
        "1": ("MTVModelLoader", {"model_name": MODELS[variant], "weight_dtype": "auto", "attention": "sdpa", "block_swap": 0,
                                 "fp8_weights": False, "offload": False}),
        "2": ("MTVVAEAndT5Loader", {"vae_name": "cogvideox5b_vae.safetensors", "t5_name": CORE_CLIP_T5, "t5_dtype": "auto"}),
        "3": ("MTVWav2VecLoader", {"wav2vec_name": "wav2vec2-base-960h/"}),
        "19": ("CLIPLoader", {"clip_name": T5XXL_FILE, "type": "sd3", "device": "default"}),
        "5": ("MTVLoadAudio", {"start_seconds": 0.0, "duration_seconds": 0.0, "audio": AUDIO_FILE}),
    }
    if demixer:
        graph["4"] = ("MTVDemixerLoader", {"model_1": "cdx23_dbb4db15.safetensors", "overlap": 0.25})
        graph.update(demix({"audio": ["5", 0], "demixer": ["4", 0]}))
    graph["7"] = ("MTVEncodeWav2Vec", {"stems": ["6", 0], "wav2vec": ["3", 0]})
    return graph


def demix(inputs: dict) -> dict:
    """Demix Stems, with a player on each stem so the user hears what the model will follow."""
    return {"6": ("MTVDemixStems", inputs),
            **{node: ("PreviewAudio", {"audio": ["6", slot]}) for slot, node in ((1, "16"), (2, "17"), (3, "18"))}}


def text(node: str, conversation: str, scene: str, person1: str = "", person2: str = "", speaker: int = 1,
         encoder: tuple[str, str] = ("clip", "19")) -> dict:
    """Text Encode fed by the core CLIP (the user's t5xxl file), or by ("t5", "2"): the VAE + T5 Loader's T5."""
    socket, source = encoder
    return {node: ("MTVTextEncode", {socket: [source, 0 if socket == "clip" else 1], "conversation": conversation, "scene": scene, "person1": person1,
                                     "person2": person2, "speaker": speaker})}


G = OFFICIAL_GUIDANCE


def apply(text_node: str, speech=1.0, effects=1.0, music=1.0, guidance=(G, G, G, G), silent=-1.0, until="",
          pauses=-1.0, pause_keep=0.0) -> dict:
    return {"9": ("MTVApply", {"mtv_model": ["1", 0], "text": [text_node, 0], "audio_features": ["7", 0],
                               "speech_strength": speech, "effects_strength": effects, "music_strength": music,
                               "text_guidance": guidance[0], "speech_guidance": guidance[1],
                               "effects_guidance": guidance[2], "music_guidance": guidance[3],
                               "silent_guidance": silent, "guidance_until": until,
                               "speech_guidance_in_pauses": pauses, "speech_pause_keep": pause_keep})}


def chain_and_save(name: str, steps: int = 30, model: str = "1") -> dict:
    return {
        "10": ("MTVChainSegments", {"mtv_model": [model, 0], "vae": ["2", 0], "conditioning": ["9", 0], "seed": 42,
                                    "steps": steps, "sampler": "dpm", "audio": ["5", 0], "colour_match": False,
                                    "work_folder": f"mtv_segments/{name}"}),
        "11": ("CreateVideo", {"images": ["10", 0], "fps": FPS, "audio": ["10", 1]}),
        "12": ("SaveVideo", {"video": ["11", 0], "filename_prefix": f"mtv/{name}", "format": "auto", "codec": "auto"}),
    }


def official_note(what: str, variant: str, demixer: bool = True, extra: str = "") -> str:
    files = [f"models/diffusion_models/{MODELS[variant]} (`python -m mtv_core convert` of the official {variant} weights)",
             MODEL_FILES["vae"], MODEL_FILES["t5"], MODEL_FILES["wav2vec"]] + ([MODEL_FILES["demixer"]] if demixer else [])
    return "\n".join([
        what, "",
        f"Change: the soundtrack in Load Audio (upload button; {AUDIO_FILE} is a short example), the scene and people "
        "in Text Encode, the seed." + (" Listen to the stems in the players before you queue." if demixer else ""),
        *([extra] if extra else []), "",
        "Needs these files:", *(f"- {f}" for f in files),
        f"Get the model, VAE and wav2vec2 with `python -m mtv_core models fetch {variant} vae wav2vec2 --dest "
        "ComfyUI/models` (or a loader's 'fetch: ...' entry where the server allows it)."
        + (" The demixer list's 'demo' entry knows only the built-in demo's synthetic sounds: do not use it on real "
           "audio." if demixer else ""), "",
        "Finished segments are kept under output/mtv_segments/; queueing again resumes where it stopped.",
    ])


# -- the workflows ----------------------------------------------------------------------------------------------
TALK_WOMAN = "A woman sits at a kitchen table in warm morning light and talks to the camera."
TALK_MAN = "A man sits at a desk in a quiet study and talks to the camera."


def demo_workflow() -> Workflow:
    """The built-in demo model on its example stems: runs anywhere, on a CPU, with nothing to download."""
    stems = dict(zip(STEMS, ("20", "21", "22")))
    graph = {
        "1": ("MTVModelLoader", {"model_name": DEMO, "weight_dtype": "fp32", "attention": "sdpa", "block_swap": 0,
                                 "fp8_weights": False, "offload": False}),
        "2": ("MTVVAEAndT5Loader", {"vae_name": DEMO, "t5_name": DEMO, "t5_dtype": "fp32"}),
        "3": ("MTVWav2VecLoader", {"wav2vec_name": DEMO}),
        "5": ("MTVLoadAudio", {"start_seconds": 0.0, "duration_seconds": 0.0, "audio": "mtv-demo/clip.mp4"}),
        **{node: ("MTVLoadAudio", {"start_seconds": 0.0, "duration_seconds": 0.0, "audio": f"mtv-demo/{name}.wav"})
           for name, node in stems.items()},
        "6": ("MTVStemsFromAudio", {name: [node, 0] for name, node in stems.items()}),
        "7": ("MTVEncodeWav2Vec", {"stems": ["6", 0], "wav2vec": ["3", 0]}),
        **text("8", "custom", demo.example_prompt(), encoder=("t5", "2")),  # the demo's own small T5
        **apply("8", guidance=tuple(demo.GUIDANCE[name] for name in GUIDANCE_ORDER), silent=demo.GUIDANCE["silent"]),
        **chain_and_save("demo", steps=20),
    }
    note = ("The built-in demo model (4.5 M parameters, trained on a synthetic world): it runs on a CPU in about a "
            "minute and needs no download.\n\nThe three players are the example's speech, effects and music stems: "
            "the mouth follows the speech, the wall's colour follows the music's mood.\n\n"
            "MST-ControlNet Apply pushes speech guidance harder than the official 3.5, effects a little softer, and "
            "does not push a silent stem (silent_guidance 1): the demo's measured best. For a close-up, guidance_until "
            "'speech=0.6, text=0.6, music=0.6' flickers less. Change the seed, strengths "
            "or scales there and queue again. For your own soundtrack use "
            "the other workflows, which need the official MTV models.")
    return Workflow("mtv_demo", f"{DEMO_WORKFLOW_PREFIX} - no download", "Runs on a CPU in a minute with the built-in model", graph, note)


WORKFLOWS = [
    demo_workflow(),
    Workflow("mtv_talking_character", "MTV Talking character", "One person talks: the lips follow the speech", {
        **loaders("single"),
        **text("8", "one", TALK_WOMAN, person1="A young woman with short dark hair wears a green sweater, centre of the frame"),
        **apply("8"), **chain_and_save("talking_character"),
    }, official_note("One person talks: her lips follow the speech stem.", "single")),
    Workflow("mtv_two_person_conversation", "MTV Two speakers (multi model)", "Two people take turns to speak", {
        **loaders("multi"),
        **demix({"audio": ["5", 0], "demixer": ["4", 0], "speaker_ranges": "0-2.5:1, 2.5-5:2"}),
        **text("8", "two", "Two friends talk on a park bench in the afternoon.", person1="A man in a grey coat on the left",
               person2="A woman in a red scarf on the right", speaker=1),
        **apply("8"), **chain_and_save("two_person_conversation"),
    }, official_note("Two people take turns: set who speaks when in Demix Stems' speaker_ranges "
                     "('start-end:speaker', in seconds).", "multi")),
    Workflow("mtv_sound_events", "MTV Sound events (accm model)", "Sound effects time what happens on screen", {
        **loaders("accm"),
        **text("8", "none", "A wooden drum on a stage is struck by a stick; each hit makes the drum skin flash."),
        **apply("8", effects=1.2, guidance=(G, G, 5.0, G)), **chain_and_save("sound_events"),
    }, official_note("No speech: the effects stem times the events (strength 1.2 and guidance 5 on effects).", "accm")),
    Workflow("mtv_music_mood", "MTV Music mood", "The music sets the colour and mood of the scene", {
        **loaders("single"),
        **text("8", "none", "A quiet city street at dusk, lights reflecting on wet pavement."),
        **apply("8", music=1.5, guidance=(G, G, G, 5.0)), **chain_and_save("music_mood"),
    }, official_note("The music stem sets the mood (strength 1.5 and guidance 5 on music).", "single")),
    Workflow("mtv_long_video", "MTV Long video - one speech track", "A long speech track, rendered in chained segments", {
        **loaders("single", demixer=False),
        "6": ("MTVStemsFromAudio", {SPEECH: ["5", 0]}),
        **text("8", "one", TALK_MAN, person1="A man with a beard in a blue shirt, centre of the frame"),
        "15": ("MTVStepCache", {"mtv_model": ["1", 0], "method": "fbc", "fbc_threshold": CACHES["fbc"].default,
                                "taylorseer_interval": int(CACHES["taylorseer"].default)}),
        **apply("8"), **chain_and_save("long_video", steps=20, model="15"),
    }, official_note("A long speech recording (no demixing): Chain Segments makes 2-second segments, each continuing "
                     "the last, cut to the audio's exact length.", "single", demixer=False,
                     extra="Step Cache reuses transformer work between steps (faster, slightly approximate); "
                           "bypass it (Ctrl+B) for the exact result.")),
    Workflow("mtv_scene_transition", "MTV Scene transition", "The scene changes while the person keeps talking", {
        **loaders("single"),
        **text("8", "one", "A man talks in a sunny garden.", person1="A man in a white shirt, centre of the frame"),
        **text("13", "one", "A man talks in a dark rainy street at night.", person1="A man in a white shirt, centre of the frame"),
        "14": ("MTVSceneTransition", {"text": ["8", 0], "next_text": ["13", 0], "start_seconds": 2.0, "transition_seconds": 1.0}),
        **apply("14"), **chain_and_save("scene_transition"),
    }, official_note("The scene changes at 2 s over 1 s: set the time in Scene Transition.", "single")),
    Workflow("mtv_start_image_keyframe", "MTV Start image keyframe", "A two-second clip that starts from your picture", {
        **loaders("single"),
        **text("8", "one", TALK_WOMAN, person1="The woman in the picture"),
        **apply("8"),
        "13": ("LoadImage", {"image": KEYFRAME_FILE}),
        "10": ("MTVSampler", {"mtv_model": ["1", 0], "vae": ["2", 0], "conditioning": ["9", 0], "seed": 42, "steps": 30,
                              "sampler": "dpm", "segment": 0, "start_image": ["13", 0]}),
        "11": ("CreateVideo", {"images": ["10", 0], "fps": FPS, "audio": ["5", 0]}),  # cut to the video's length
        "12": ("SaveVideo", {"video": ["11", 0], "filename_prefix": "mtv/start_image_keyframe", "format": "auto", "codec": "auto"}),
    }, official_note(f"One 2-second segment that starts from your picture (Load Image: {KEYFRAME_FILE}), with the "
                     "soundtrack's first two seconds under it.", "single",
                     extra="For another part of the soundtrack set Load Audio's start_seconds and keep the sampler's "
                           "segment at 0, so picture and sound stay together.")),
]
