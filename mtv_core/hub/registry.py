"""Names of the official models, where each comes from and where it is installed. Light: importing it downloads
nothing and imports neither torch nor huggingface_hub, so node lists can show the names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

MTV_REPO = "BAAI/MTVCraft"
COGVIDEOX_REPO = "THUDM/CogVideoX-5b-I2V"
WAV2VEC_REPO = "facebook/wav2vec2-base-960h"
DEMUCS_SOURCE = "demucs htdemucs"
LABEL_PREFIX = "fetch: "
DTYPES = ("bf16", "fp8")
CDX23_NOTE = ("The MVSEP-CDX23 cinematic demixer (dialog / effects / music, what the MTV data preparation used) is a "
              "manual download: get 97d170e1-*.th from the v.1.0.0 release of github.com/ZFTurbo/MVSEP-CDX23-Cinematic-"
              "Sound-Demixing, then `python -m mtv_core convert-demixer --input 97d170e1-....th --output "
              "COMFYUI/models/demucs/cdx23.safetensors`.")


@dataclass(frozen=True)
class RepoPart:
    """Files of one folder of a Hugging Face repo ("" is the root): the named ones, or every usable file. They are
    installed in the subfolder `into` of the model's folder ("" is the folder itself)."""
    folder: str
    names: tuple[str, ...] = ()
    into: str = ""


@dataclass(frozen=True)
class HubModel:
    name: str  # what `models fetch` takes
    folder: str  # the ComfyUI model folder it goes to
    installed: str  # its file or folder name there
    source: str  # the Hugging Face repo, or where else it comes from
    approx_bytes: int  # for lists and labels only; a fetch checks the hub's own sizes
    what: str
    parts: tuple[RepoPart, ...] = ()
    # "mtv": the official .pt becomes safetensors; "vae": the diffusers folder becomes one file with its config;
    # "demucs": demucs' loader, then ours. Installed names are the ones the shipped workflows load.
    convert: str = ""

    def installed_name(self, dtype: str = "bf16") -> str:
        if self.convert == "mtv" and dtype == "fp8":
            return self.installed.replace(".safetensors", "_fp8.safetensors")
        return self.installed

    def target(self, folder: Path, dtype: str = "bf16") -> Path:
        return Path(folder) / self.installed_name(dtype)


def _mtv(variant: str, what: str) -> HubModel:
    return HubModel(variant, "diffusion_models", f"mtv_{variant}.safetensors", MTV_REPO, 23 * 10**9, what,
                    (RepoPart(f"mtv/{variant}/1", ("mp_rank_00_model_states.pt",)),), convert="mtv")


MODELS = {model.name: model for model in (
    _mtv("single", "MTV transformer, one speaker"),
    _mtv("multi", "MTV transformer, two speakers"),
    _mtv("accm", "MTV transformer tuned for sound effects"),
    HubModel("vae", "vae", "cogvideox5b_vae.safetensors", COGVIDEOX_REPO, 862 * 10**6,
             "CogVideoX 3D VAE (one file, as `convert` makes from 3d-vae.pt)", (RepoPart("vae"),), convert="vae"),
    HubModel("t5", "text_encoders", "t5-v1_1-xxl", COGVIDEOX_REPO, 9_530 * 10**6,
             "T5 v1.1 XXL encoder and tokenizer (one folder)",
             (RepoPart("text_encoder", into="text_encoder"), RepoPart("tokenizer", into="tokenizer"))),
    HubModel("wav2vec2", "audio_encoders", "wav2vec2-base-960h", WAV2VEC_REPO, 378 * 10**6, "wav2vec2 audio encoder",
             (RepoPart("", ("config.json", "preprocessor_config.json", "model.safetensors")),)),
    HubModel("demucs", "demucs", "htdemucs.safetensors", DEMUCS_SOURCE, 168 * 10**6,
             "4-stem HTDemucs demixer (vocals → speech, the rest → music)", convert="demucs"),
)}
SHARED = ("vae", "t5", "wav2vec2", "demucs")
GROUPS = {f"all-{variant}": (variant, *SHARED) for variant in ("single", "multi", "accm")}


def expand_names(names) -> list[HubModel]:
    """The models that names and groups stand for, each once, in order; an unknown name is refused."""
    models = []
    for name in names:
        if name not in MODELS and name not in GROUPS:
            raise ConfigError(f"unknown model {name!r}; choose from {', '.join([*MODELS, *GROUPS])} "
                              "(`python -m mtv_core models list` describes them)")
        models += [MODELS[member] for member in GROUPS.get(name, (name,)) if MODELS[member] not in models]
    return models


def human_size(size: int) -> str:
    return f"{size / 10**9:.0f} GB" if size >= 10 * 10**9 else f"{size / 10**9:.1f} GB" if size >= 10**9 \
        else f"{size / 10**6:.0f} MB"


def offer_label(model: HubModel) -> str:
    """How a loader lists a model it can fetch: 'fetch: mtv_single (BAAI/MTVCraft, ~23 GB)'."""
    return f"{LABEL_PREFIX}{model.installed.removesuffix('.safetensors')} ({model.source}, ~{human_size(model.approx_bytes)})"


def model_for_label(label) -> HubModel | None:
    """The model a loader's fetch label names, or None for any other choice."""
    if not isinstance(label, str) or not label.startswith(LABEL_PREFIX):
        return None
    return next((model for model in MODELS.values() if offer_label(model) == label), None)


def offers_for(folder: str) -> list[HubModel]:
    """The models that install into a ComfyUI model folder."""
    return [model for model in MODELS.values() if model.folder == folder]
