"""The models a loader lists and loads: files and Hugging Face folders under ComfyUI's model folders, the built-in
demo's, and a 'fetch: ...' entry for each official model not installed yet, downloaded on first use where the
server's operator allows it. A name cannot leave its model folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mtv_core import demo
from mtv_core.errors import ConfigError, ModelFileError, MTVError
from mtv_core.fileio import relative_name
from mtv_core.hub import model_for_label, offer_label, offers_for
from mtv_core.hub.fetch import fetch_models

from .comfy_adapter import DEMO_CHOICE, DEMO_DEMIXER_CHOICE, DEMUCS_FOLDER, NO_DEMIXER, NO_LORA, is_demo_choice
from .folders import MODEL_EXTENSIONS, folder_roots
from .progress import progress_and_interrupt

# Set to 1 by the server's operator when starting ComfyUI: only then may a workflow's 'fetch:' entry download.
ALLOW_NODE_FETCH = "MTV_ALLOW_NODE_FETCH"


def _demo_file(folder: str) -> Path | None:
    """The built-in demo's file for a model folder, if the demo is installed."""
    path = {"diffusion_models": demo.MODEL, "vae": demo.VAE, "text_encoders": demo.T5, "audio_encoders": demo.WAV2VEC,
            DEMUCS_FOLDER: demo.DEMIXER}.get(folder)
    return path if path is not None and path.exists() else None


def list_model_files(folder: str, extensions=MODEL_EXTENSIONS) -> list[str]:
    """One entry per model under a model folder: files, and Hugging Face folders (which hold a config.json) as
    'name/' without the files inside them; the built-in demo comes first where it has a file for this folder,
    except the demo demixer, which comes last under its own label."""
    names = set()
    for root in folder_roots(folder):
        if root.is_dir():
            names |= _models_under(root, extensions)
    if not _demo_file(folder):
        return sorted(names)
    if folder == DEMUCS_FOLDER:
        return sorted(names) + [DEMO_DEMIXER_CHOICE]
    return [DEMO_CHOICE] + sorted(names)


def _models_under(root: Path, extensions) -> set[str]:
    names = set()
    for current, folders, files in os.walk(root, followlinks=True):
        here = Path(current)
        if here != root and _holds_one_model(here):
            names.add(here.relative_to(root).as_posix() + "/")
            folders.clear()  # the folder is one model: its weight files are not listed on their own
            continue
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        names |= {(here / f).relative_to(root).as_posix() for f in files if Path(f).suffix in extensions and not f.startswith(".")}
    return names


def _holds_one_model(folder: Path) -> bool:
    """A Hugging Face folder; or a fetched T5, whose encoder and tokenizer are subfolders."""
    return (folder / "config.json").is_file() or (folder / "text_encoder" / "config.json").is_file()


def model_path(folder: str, name: str) -> Path:
    """Absolute path of a model chosen by name; the name cannot leave the model folder."""
    if is_demo_choice(folder, name) and _demo_file(folder):
        return _demo_file(folder)
    relative = relative_name(name.rstrip("/") if isinstance(name, str) else name, f"models/{folder} folder")
    for root in folder_roots(folder):
        candidate = root / relative
        if candidate.exists():
            return candidate
    searched = ", ".join(str(r) for r in folder_roots(folder)) or folder
    raise ModelFileError(f"model file {name!r} not found in {searched}; put it in ComfyUI's models/{folder} folder and refresh")


def model_choices(folder: str, extensions=MODEL_EXTENSIONS) -> list[str]:
    """What a loader lists: the installed models, then a 'fetch: ...' entry for each official model of this folder
    that is not installed yet. Listing downloads nothing."""
    return list_model_files(folder, extensions) + fetch_choices(folder)


def demixer_choices() -> list[str]:
    """Demixer Loader's list: the installed demixers (or a line saying there is none, so a new node's default
    downloads nothing), the ones it can fetch, then the demo demixer, which knows only synthetic sounds."""
    installed = list_model_files(DEMUCS_FOLDER)
    real = [name for name in installed if name != DEMO_DEMIXER_CHOICE]
    return (real or [NO_DEMIXER]) + fetch_choices(DEMUCS_FOLDER) + installed[len(real):]


def fetch_choices(folder: str) -> list[str]:
    return [offer_label(model) for model in offers_for(folder) if _installed(folder, model) is None]


def _installed(folder: str, model) -> Path | None:
    return next((root / model.installed for root in folder_roots(folder) if (root / model.installed).exists()), None)


def is_fetch_choice(folder: str, name) -> bool:
    model = model_for_label(name)
    return model is not None and model.folder == folder


def node_fetch_allowed() -> bool:
    return os.environ.get(ALLOW_NODE_FETCH) == "1"


def node_fetch_refusal(folder: str, name: str) -> str | None:
    """Why a 'fetch: ...' choice may not download here, or None. An installed model needs no download."""
    model = model_for_label(name)
    if node_fetch_allowed() or _installed(folder, model) is not None:
        return None
    return (f"downloading models from a workflow is off on this server; run `python -m mtv_core models fetch "
            f"{model.name} --dest ComfyUI/models` (or start ComfyUI with {ALLOW_NODE_FETCH}=1)")


def resolve_model(folder: str, name: str) -> Path:
    """The path of the model a loader was given. A 'fetch: ...' choice is downloaded (and converted) into the
    folder's first ComfyUI path the first time, with the progress bar, then loaded from there; only where the
    server's operator allowed it (MTV_ALLOW_NODE_FETCH=1)."""
    if not is_fetch_choice(folder, name):
        return model_path(folder, name)
    model = model_for_label(name)
    installed = _installed(folder, model)
    if installed is not None:
        return installed
    if (refusal := node_fetch_refusal(folder, name)) is not None:
        raise ConfigError(refusal)
    roots = folder_roots(folder)
    if not roots:
        raise ModelFileError(f"ComfyUI has no models/{folder} folder to fetch {model.name} into; add one in "
                             "extra_model_paths.yaml or fetch it with `python -m mtv_core models fetch`")
    [path] = fetch_models([model.name], lambda _: roots[0], progress=progress_and_interrupt(1),
                          say=lambda line: logging.info("[MTV] %s", line))
    return path


def check_model_name(folder: str, name: str) -> bool | str:
    """What a loader's VALIDATE_INPUTS returns: True, or one line naming the problem and the fix."""
    if name == NO_DEMIXER:
        return ("no demixer is installed: put an HTDemucs model in ComfyUI's models/demucs folder (convert MVSEP-CDX23 "
                "with `python -m mtv_core convert-demixer`), choose the 'fetch: htdemucs' entry to download the 4-stem "
                "htdemucs, or use Stems From Audio with stems you separated yourself")
    if name == NO_LORA:
        return ("no LoRA is installed: put an MTV LoRA (made with `python -m trainer --train lora`) in ComfyUI's "
                "models/loras folder and refresh, or bypass this node")
    if is_fetch_choice(folder, name):
        return node_fetch_refusal(folder, name) or True
    try:
        model_path(folder, name)
    except MTVError as error:
        return str(error)
    return True
