"""What ComfyUI and saved workflows see of the pack: how a node is declared (`Node`), how an mtv_core error is shown
on a node's input (`node_errors`), the labels the loaders list, and ComfyUI's AUDIO and IMAGE values as mtv_core's.

Saved workflows store node ids, input names, widget values and the labels below by value: none of them changes.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from mtv_core.audio import Waveform
from mtv_core.audio.io import check_finite
from mtv_core.errors import AudioInputError, MTVError

# Every node's menu and title carry it: "MTV" alone is also MTV-Crafter's (a pose-animation pack).
PACK_NAME = "MTV audio-sync"


class Node:
    """A node declared in one place: its menu, method and outputs as class keywords, its inputs as two tables.

        class MTVDecode(Node, menu="sampling", function="decode", outputs={"frames": "IMAGE"}):
            DESCRIPTION = "Decodes MTV latents with the CogVideoX VAE."
            REQUIRED = {"latent": ("MTV_LATENT", {"tooltip": "From MTV Sampler."})}

    An input whose declaration is a function (a file list, or a range read from a heavy module) is declared anew
    each time ComfyUI reads the inputs."""

    REQUIRED: dict = {}
    OPTIONAL: dict = {}

    def __init_subclass__(cls, menu: str, function: str, outputs: dict, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.CATEGORY = f"{PACK_NAME}/{menu}"
        cls.FUNCTION = function
        cls.RETURN_NAMES, cls.RETURN_TYPES = tuple(outputs), tuple(outputs.values())

    @classmethod
    def INPUT_TYPES(cls):
        tables = {"required": cls.REQUIRED, "optional": cls.OPTIONAL}
        return {section: {name: _declared(spec) for name, spec in table.items()} for section, table in tables.items()
                if table}


def _declared(spec) -> tuple:
    kind, options = spec() if callable(spec) else spec
    return kind, dict(options)


def node_error(node: str, input_name: str, error: Exception) -> Exception:
    """Name the node and the input in front of mtv_core's message (which already says what to do)."""
    return type(error)(f"{node}: input '{input_name}': {error}") if isinstance(error, MTVError) else error


@contextmanager
def node_errors(node: str, input_name: str):
    """Within the block (or the method it decorates), an mtv_core error is raised again naming the node and the
    input, which ComfyUI shows on that node; any other exception passes unchanged."""
    try:
        yield
    except MTVError as error:
        raise node_error(node, input_name, error) from error


# -- labels the loaders list -------------------------------------------------------------------------------------
DEMUCS_FOLDER = "demucs"  # the model folder the pack adds to ComfyUI's
DEMO_CHOICE = "demo (built-in)"
# The demo demixer separates only the synthetic world's sounds: its entry says so, and it is listed after the real
# ones so a user fixing a missing demixer does not pick it for real audio. DEMO_CHOICE still names it (saved graphs).
DEMO_DEMIXER_CHOICE = "demo (built-in, synthetic sounds only)"
NO_DEMIXER = "(no demixer installed: put an HTDemucs file in models/demucs)"
NO_LORA = "(no LoRA installed: put an MTV LoRA in models/loras)"


def is_demo_choice(folder: str, name) -> bool:
    return name == DEMO_CHOICE or (folder == DEMUCS_FOLDER and name == DEMO_DEMIXER_CHOICE)


# -- the shipped examples ----------------------------------------------------------------------------------------
DEMO_INPUT_FOLDER = "mtv-demo"  # the built-in demo's example stems and clip, under this input subfolder
# The official workflows' example soundtrack and keyframe, written by workflows/build.py from the demo's examples.
# They are named as files of the input folder itself: core Load Image lists no subfolder.
EXAMPLE_INPUTS = Path(__file__).resolve().parents[1] / "workflows" / "inputs"
# The demo template's title starts with it, and sorts first by name: ComfyUI serves a pack's templates in directory
# order (hash order on most Linux file systems), and its template browser sorts them A-Z on request.
DEMO_WORKFLOW_PREFIX = "MTV Demo"


# -- ComfyUI's AUDIO and IMAGE -----------------------------------------------------------------------------------
def to_comfy_audio(waveform: Waveform) -> dict:
    """A core Waveform -> ComfyUI's AUDIO: {"waveform": float32 [1, C, T] on the CPU, "sample_rate": int}."""
    return {"waveform": waveform.samples.detach().to("cpu", torch.float32).unsqueeze(0).contiguous(),
            "sample_rate": int(waveform.sample_rate)}


def from_comfy_audio(audio: dict) -> Waveform:
    """ComfyUI's AUDIO ({"waveform": [B, C, T], "sample_rate": int}; B must be 1) -> a core Waveform."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise AudioInputError("AUDIO input is not a ComfyUI audio dict with 'waveform' and 'sample_rate'; connect a Load Audio output.")
    samples = torch.as_tensor(audio["waveform"]).detach().to("cpu", torch.float32)
    if samples.dim() == 3:
        if samples.shape[0] != 1:
            raise AudioInputError(f"AUDIO input holds a batch of {samples.shape[0]} clips; pass one clip (batch 1).")
        samples = samples[0]
    if samples.dim() != 2 or samples.shape[1] == 0:
        raise AudioInputError(f"AUDIO waveform has shape {tuple(samples.shape)}; expected [1, channels, samples] with samples > 0.")
    check_finite(samples, "AUDIO input")
    return Waveform(samples.contiguous(), int(audio["sample_rate"]))


def to_comfy_image(frames_uint8: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 frames -> ComfyUI's IMAGE: float32 in [0, 1], the same layout."""
    return frames_uint8.float() / 255.0
