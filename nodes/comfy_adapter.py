"""The one place where ComfyUI's services reach the pack: progress, interrupts, model folders, device.

Every function falls back to plain behaviour when ComfyUI is absent (tests, scripts), so mtv_core only
ever sees plain callbacks and paths.
"""

from __future__ import annotations

import os
from pathlib import Path

DEMUCS_FOLDER = "demucs"
MODEL_EXTENSIONS = {".safetensors", ".sft", ".th"}


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


DEMO_CHOICE = "demo (built-in)"
DEMO_INPUT_PREFIX = "mtv-demo/"


def _demo_file(folder: str) -> Path | None:
    """The built-in demo's file for a model folder, if the demo is installed."""
    from mtv_core import demo

    path = {"diffusion_models": demo.MODEL, "vae": demo.VAE, "text_encoders": demo.T5, "audio_encoders": demo.WAV2VEC}.get(folder)
    return path if path is not None and path.exists() else None


def list_model_files(folder: str, extensions=MODEL_EXTENSIONS) -> list[str]:
    """Files (and Hugging Face folders, which hold a config.json) under a model folder, relative names;
    the built-in demo model comes first where it has a file for this folder."""
    demo = [DEMO_CHOICE] if _demo_file(folder) else []
    names = set()
    for root in folder_roots(folder):
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if path.is_file() and path.suffix in extensions:
                names.add(path.relative_to(root).as_posix())
            elif path.is_dir() and (path / "config.json").is_file():
                names.add(path.relative_to(root).as_posix() + "/")
    return demo + sorted(names)


def model_path(folder: str, name: str) -> Path:
    """Absolute path of a listed model, or a clear error naming the folders searched."""
    from mtv_core.errors import ModelFileError

    if name == DEMO_CHOICE and _demo_file(folder):
        return _demo_file(folder)
    for root in folder_roots(folder):
        candidate = root / name.rstrip("/")
        if candidate.exists():
            return candidate
    searched = ", ".join(str(r) for r in folder_roots(folder)) or folder
    raise ModelFileError(f"model file {name!r} not found in {searched}; put it in ComfyUI's models/{folder} folder and refresh")


def input_path(name: str) -> Path:
    """A file from ComfyUI's input folder (as LoadImage/LoadAudio use), or a plain path."""
    if name.startswith(DEMO_INPUT_PREFIX):
        from mtv_core import demo

        return demo.EXAMPLE / name[len(DEMO_INPUT_PREFIX):]
    fp = _folder_paths()
    if fp is None:
        return _fallback("MTV_INPUT_DIR", "input") / name
    return Path(fp.get_annotated_filepath(name))


def input_files(content_types=("audio", "video")) -> list[str]:
    """The input folder's files, then the built-in demo's example soundtrack and stems."""
    return _user_input_files(content_types) + _demo_inputs()


def _demo_inputs() -> list[str]:
    from mtv_core import demo

    if not demo.EXAMPLE.is_dir():
        return []
    return [DEMO_INPUT_PREFIX + p.name for p in sorted(demo.EXAMPLE.iterdir()) if p.suffix in (".wav", ".mp4")]


def _user_input_files(content_types) -> list[str]:
    fp = _folder_paths()
    folder = fp.get_input_directory() if fp is not None else _fallback("MTV_INPUT_DIR", "input")
    if not os.path.isdir(folder):
        return []
    files = sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))
    return fp.filter_files_content_types(files, list(content_types)) if fp is not None else files


def output_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_output_directory()) if fp is not None else _fallback("MTV_OUTPUT_DIR", "output")


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


def offload_device():
    import torch

    return torch.device("cpu")
