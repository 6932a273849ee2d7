"""ComfyUI's folders as the nodes use them: the model folders' roots, the input folder (with the shipped example
inputs) and the output folder. Every name a node receives is checked here before it touches the disk: it cannot
leave its folder. Outside ComfyUI (scripts, tests) the folders come from MTV_MODELS_DIR / MTV_INPUT_DIR /
MTV_OUTPUT_DIR."""

from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path

from mtv_core import demo
from mtv_core.errors import MTVError
from mtv_core.fileio import contained_path

from .comfy_adapter import DEMO_INPUT_FOLDER, DEMUCS_FOLDER, EXAMPLE_INPUTS

MODEL_EXTENSIONS = {".safetensors", ".sft", ".th"}


def _folder_paths():
    """ComfyUI's folder_paths, imported when first asked: the pack is also imported where ComfyUI is not."""
    try:
        import folder_paths

        return folder_paths
    except ImportError:
        return None


def _fallback(variable: str, default: str) -> Path:
    return Path(os.environ.get(variable, default))


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


# -- the input folder -------------------------------------------------------------------------------------------
def input_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_input_directory()) if fp is not None else _fallback("MTV_INPUT_DIR", "input")


def shipped_inputs() -> dict[str, Path]:
    """Input name -> the shipped file: the demo's example stems and clip under mtv-demo/, and the official
    workflows' soundtrack and keyframe in the input folder itself."""
    stems = {f"{DEMO_INPUT_FOLDER}/{p.name}": p for p in sorted(demo.EXAMPLE.glob("*")) if p.suffix in (".wav", ".mp4")}
    return {**stems, **{p.name: p for p in sorted(EXAMPLE_INPUTS.glob("*")) if p.is_file()}}


@functools.cache
def place_shipped_inputs() -> None:
    """Under ComfyUI, copy the shipped examples its input folder lacks into it, once per server and never over a file
    already there: the browser's players and core Load Image read only the input folder (through /view). Load Audio
    calls this when ComfyUI first asks it for its file list. Where the folder is read-only, or outside ComfyUI, the
    nodes read the shipped files themselves (input_path)."""
    if _folder_paths() is None:
        return
    folder = input_directory()
    for name, source in shipped_inputs().items():
        try:
            if not (folder / name).exists():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, folder / name)
        except OSError as error:
            logging.info("[MTV] example input %s not copied to %s (%s); its player stays empty", name, folder, error)


def input_path(name: str) -> Path:
    """A file of ComfyUI's input folder (as LoadImage/LoadAudio read them); for a shipped example's name that the
    folder lacks, the shipped file."""
    path = contained_path(input_directory(), name, "input folder")
    return path if path.exists() else shipped_inputs().get(name, path)


def check_input_file(name: str) -> bool | str:
    """What VALIDATE_INPUTS returns for a file name: True, or one line naming the problem and the fix."""
    try:
        path = input_path(name)
    except MTVError as error:
        return str(error)
    if not path.is_file():
        return f"file {name!r} is not in ComfyUI's input folder; upload it with the node's button or copy it there"
    return True


def input_files(content_types=("audio", "video")) -> list[str]:
    """The input folder's files (one level of subfolders, as ComfyUI's uploads use), then the shipped examples, the
    demo's last."""
    files = [name for name in _files_under(input_directory()) if not name.startswith(DEMO_INPUT_FOLDER + "/")]
    examples = sorted(shipped_inputs(), key=lambda name: name.startswith(DEMO_INPUT_FOLDER + "/"))
    files += [name for name in examples if name not in files]
    fp = _folder_paths()
    return fp.filter_files_content_types(files, list(content_types)) if fp is not None else files


def _files_under(folder: Path) -> list[str]:
    files = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        if path.name.startswith("."):
            continue
        if path.is_file():
            files.append(path.name)
        elif path.is_dir():
            files += [f"{path.name}/{p.name}" for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]
    return files


# -- the output folder ------------------------------------------------------------------------------------------
def output_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_output_directory()) if fp is not None else _fallback("MTV_OUTPUT_DIR", "output")


def output_folder(name: str) -> Path:
    """A folder under ComfyUI's output folder, chosen by a relative name that cannot leave it."""
    return contained_path(output_directory(), name, "output folder")
