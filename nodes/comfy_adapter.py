"""The one place where ComfyUI's services reach the pack: progress, interrupts, model, input and output folders,
device.

Every function falls back to plain behaviour when ComfyUI is absent (tests, scripts), so mtv_core only ever sees
plain callbacks and paths. Every name a node receives is checked here before it touches the disk: files are read
only from ComfyUI's input folder, its model folders or the built-in demo, and written only under its output folder.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

DEMUCS_FOLDER = "demucs"
MODEL_EXTENSIONS = {".safetensors", ".sft", ".th"}
DEMO_CHOICE = "demo (built-in)"
DEMO_INPUT_FOLDER = "mtv-demo"
NO_DEMIXER = "(no demixer installed: put an HTDemucs file in models/demucs)"
NO_LORA = "(no LoRA installed: put an MTV LoRA in models/loras)"
# Set to 1 by the server's operator when starting ComfyUI: only then may a workflow's 'fetch:' entry download.
ALLOW_NODE_FETCH = "MTV_ALLOW_NODE_FETCH"


def _fallback(variable: str, default: str) -> Path:
    """Outside ComfyUI (scripts, tests) folders come from MTV_MODELS_DIR / MTV_INPUT_DIR / MTV_OUTPUT_DIR."""
    return Path(os.environ.get(variable, default))


def _folder_paths():
    try:
        import folder_paths

        return folder_paths
    except ImportError:
        return None


def register_model_folders() -> None:
    """ComfyUI already knows diffusion_models, vae, text_encoders, audio_encoders; add demucs."""
    fp = _folder_paths()
    if fp is None or DEMUCS_FOLDER in fp.folder_names_and_paths:
        return
    fp.folder_names_and_paths[DEMUCS_FOLDER] = ([os.path.join(fp.models_dir, DEMUCS_FOLDER)], MODEL_EXTENSIONS)


def folder_roots(folder: str) -> list[Path]:
    fp = _folder_paths()
    if fp is None:
        return [_fallback("MTV_MODELS_DIR", "models") / folder]
    try:
        return [Path(p) for p in fp.get_folder_paths(folder)]
    except KeyError:
        return []


# -- models -----------------------------------------------------------------------------------------------------
def _demo_file(folder: str) -> Path | None:
    """The built-in demo's file for a model folder, if the demo is installed."""
    from mtv_core import demo

    path = {"diffusion_models": demo.MODEL, "vae": demo.VAE, "text_encoders": demo.T5, "audio_encoders": demo.WAV2VEC,
            DEMUCS_FOLDER: demo.DEMIXER}.get(folder)
    return path if path is not None and path.exists() else None


def list_model_files(folder: str, extensions=MODEL_EXTENSIONS) -> list[str]:
    """One entry per model under a model folder: files, and Hugging Face folders (which hold a config.json) as
    'name/' without the files inside them; the built-in demo comes first where it has a file for this folder."""
    demo = [DEMO_CHOICE] if _demo_file(folder) else []
    names = set()
    for root in folder_roots(folder):
        if root.is_dir():
            names |= _models_under(root, extensions)
    return demo + sorted(names)


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
    from mtv_core.errors import ModelFileError
    from mtv_core.fileio import relative_name

    if name == DEMO_CHOICE and _demo_file(folder):
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


def fetch_choices(folder: str) -> list[str]:
    from mtv_core.hub import offer_label, offers_for

    return [offer_label(model) for model in offers_for(folder) if _installed(folder, model) is None]


def _installed(folder: str, model) -> Path | None:
    return next((root / model.installed for root in folder_roots(folder) if (root / model.installed).exists()), None)


def is_fetch_choice(folder: str, name) -> bool:
    from mtv_core.hub import model_for_label

    model = model_for_label(name)
    return model is not None and model.folder == folder


def node_fetch_allowed() -> bool:
    return os.environ.get(ALLOW_NODE_FETCH) == "1"


def node_fetch_refusal(folder: str, name: str) -> str | None:
    """Why a 'fetch: ...' choice may not download here, or None. An installed model needs no download."""
    from mtv_core.hub import model_for_label

    model = model_for_label(name)
    if node_fetch_allowed() or _installed(folder, model) is not None:
        return None
    return (f"downloading models from a workflow is off on this server; run `python -m mtv_core models fetch "
            f"{model.name} --dest ComfyUI/models` (or start ComfyUI with {ALLOW_NODE_FETCH}=1)")


def resolve_model(folder: str, name: str) -> Path:
    """The path of the model a loader was given. A 'fetch: ...' choice is downloaded (and converted) into the
    folder's first ComfyUI path the first time, with the progress bar, then loaded from there; only where the
    server's operator allowed it (MTV_ALLOW_NODE_FETCH=1)."""
    from mtv_core.errors import ConfigError, ModelFileError
    from mtv_core.hub import model_for_label
    from mtv_core.hub.fetch import fetch_models

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
    from mtv_core.errors import MTVError

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


# -- input files ------------------------------------------------------------------------------------------------
def input_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_input_directory()) if fp is not None else _fallback("MTV_INPUT_DIR", "input")


def input_path(name: str) -> Path:
    """A file from ComfyUI's input folder (as LoadImage/LoadAudio use). Names under mtv-demo/ fall back to the
    built-in demo's example when the input folder has no copy of it."""
    from mtv_core.fileio import contained_path

    path = contained_path(input_directory(), name, "input folder")
    if not path.exists() and name.startswith(DEMO_INPUT_FOLDER + "/"):
        from mtv_core import demo

        return contained_path(demo.EXAMPLE, name[len(DEMO_INPUT_FOLDER) + 1:], "demo example folder")
    return path


def check_input_file(name: str) -> bool | str:
    """What VALIDATE_INPUTS returns for a file name: True, or one line naming the problem and the fix."""
    from mtv_core.errors import MTVError

    try:
        path = input_path(name)
    except MTVError as error:
        return str(error)
    if not path.is_file():
        return f"file {name!r} is not in ComfyUI's input folder; upload it with the node's button or copy it there"
    return True


def input_files(content_types=("audio", "video")) -> list[str]:
    """The input folder's files (one level of subfolders, as ComfyUI's uploads use), the demo example last."""
    fp = _folder_paths()
    folder = input_directory()
    files = []
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                files.append(path.name)
            elif path.is_dir() and not path.name.startswith("."):
                files += [f"{path.name}/{p.name}" for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]
    if fp is not None:
        files = fp.filter_files_content_types(files, list(content_types))
    return [name for name in files if not name.startswith(DEMO_INPUT_FOLDER + "/")] + _demo_inputs()


def _demo_inputs() -> list[str]:
    from mtv_core import demo

    if not demo.EXAMPLE.is_dir():
        return []
    return [f"{DEMO_INPUT_FOLDER}/{p.name}" for p in sorted(demo.EXAMPLE.iterdir()) if p.suffix in (".wav", ".mp4")]


def install_demo_inputs() -> None:
    """Copy the demo example into ComfyUI's input/mtv-demo/ so the browser can play it (its player reads only the
    input folder). Existing files are never replaced; a read-only input folder is left alone."""
    from mtv_core import demo

    fp = _folder_paths()
    if fp is None or not demo.EXAMPLE.is_dir():
        return
    target = Path(fp.get_input_directory()) / DEMO_INPUT_FOLDER
    try:
        target.mkdir(parents=True, exist_ok=True)
        for source in demo.EXAMPLE.iterdir():
            if source.suffix in (".wav", ".mp4") and not (target / source.name).exists():
                shutil.copyfile(source, target / source.name)
    except OSError as error:
        logging.info("[MTV] demo example not copied to %s (%s); it still loads, without a preview", target, error)


# -- the template browser ---------------------------------------------------------------------------------------
DEMO_WORKFLOW_PREFIX = "MTV Demo"


def list_demo_workflow_first() -> None:
    """ComfyUI serves a pack's example workflows in directory order (a hash order on Linux) and the template
    browser shows them in that order; put the demo, the one that runs with nothing to download, first."""
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return

    @web.middleware
    async def demo_first(request, handler):
        response = await handler(request)
        if request.path.endswith("/workflow_templates") and isinstance(response, web.Response) and response.status == 200:
            return _with_demo_first(response)
        return response

    try:
        PromptServer.instance.app.middlewares.append(demo_first)
    except (AttributeError, RuntimeError) as error:  # no server instance, or the server already started
        logging.info("[MTV] template order left as ComfyUI serves it (%s)", error)


def _with_demo_first(response):
    import json

    from aiohttp import web

    try:
        listing = json.loads(response.body)
    except (TypeError, ValueError):
        return response
    return web.json_response(demo_first(listing))


def demo_first(listing):
    """/workflow_templates' answer with this pack's names in order, the demo first; anything else as it was."""
    if not isinstance(listing, dict):
        return listing
    ordered = dict(listing)
    for pack, names in listing.items():
        if isinstance(names, list) and any(isinstance(n, str) and n.startswith(DEMO_WORKFLOW_PREFIX) for n in names):
            ordered[pack] = sorted(names, key=lambda n: (not str(n).startswith(DEMO_WORKFLOW_PREFIX), str(n)))
    return ordered


# -- output folders ---------------------------------------------------------------------------------------------
def output_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_output_directory()) if fp is not None else _fallback("MTV_OUTPUT_DIR", "output")


def output_folder(name: str) -> Path:
    """A folder under ComfyUI's output folder, chosen by a relative name that cannot leave it."""
    from mtv_core.fileio import contained_path

    return contained_path(output_directory(), name, "output folder")


# -- ComfyUI's AUDIO ---------------------------------------------------------------------------------------------
def to_comfy_audio(waveform) -> dict:
    """A core Waveform -> ComfyUI's AUDIO: {"waveform": float32 [1, C, T] on the CPU, "sample_rate": int}."""
    import torch

    return {"waveform": waveform.samples.detach().to("cpu", torch.float32).unsqueeze(0).contiguous(),
            "sample_rate": int(waveform.sample_rate)}


def from_comfy_audio(audio: dict):
    """ComfyUI's AUDIO ({"waveform": [B, C, T], "sample_rate": int}; B must be 1) -> a core Waveform."""
    import torch

    from mtv_core.audio.io import Waveform, check_finite
    from mtv_core.errors import AudioInputError

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


# -- progress, interrupts, devices ------------------------------------------------------------------------------
def progress_callback(total: int):
    """(step, total) -> None that drives ComfyUI's progress bar (which also checks for interrupts)."""
    try:
        from comfy.utils import ProgressBar
    except ImportError:
        return lambda step, total_steps=None: None
    bar = ProgressBar(total)
    return lambda step, total_steps=None: bar.update_absolute(step, total_steps)


def interrupt_check():
    """Raises ComfyUI's own interruption exception when the user pressed Cancel."""
    try:
        from comfy.model_management import throw_exception_if_processing_interrupted
    except ImportError:
        return lambda: False

    def check():
        throw_exception_if_processing_interrupted()
        return False

    return check


def progress_and_interrupt(total: int):
    """One (done, total) callback that updates the progress bar and stops on Cancel."""
    interrupt, progress = interrupt_check(), progress_callback(total)

    def report(done, total_done=None):
        interrupt()
        progress(done, total_done)

    return report


def torch_device():
    import torch

    try:
        from comfy.model_management import get_torch_device

        return get_torch_device()
    except ImportError:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
