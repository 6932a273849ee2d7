"""Fetching official models: the hub's file list with sizes and hashes, downloads that resume where a cut or a
stopped run left them (`download`), each file checked against the hub's sha256 (or git blob id) before it keeps its
name, the MTV checkpoint converted as it is installed, and a model's final file or folder appearing only when complete.

The hub is `HF_ENDPOINT` (default https://huggingface.co), read when a fetch starts, so a mirror works.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, GenerationError, ModelFileError
from ..fileio import FolderLock, relative_name, temp_files_beside
from .download import REVISION, RemoteFile, download, first_line, hub_endpoint, size_on_disk, verify
from .registry import (
    DEMUCS_SOURCE,
    DTYPES,
    HubModel,
    RepoPart,
    expand_names,
    human_size,
)

USABLE_SUFFIXES = (".json", ".safetensors", ".model", ".txt")

Progress = Callable[[int, int], None]


@dataclass
class Plan:
    model: HubModel
    target: Path
    files: list[RemoteFile]

    @property
    def stage(self) -> Path:
        """A hidden folder beside the target (ComfyUI does not list it) where downloads wait until complete."""
        return self.target.parent / f".{self.target.name}.fetch"

    def downloaded(self, file: RemoteFile) -> Path:
        return self.stage / file.installed_as

    def partial(self, file: RemoteFile) -> Path:
        return self.downloaded(file).with_name(file.partial_name)

    def bytes_to_download(self) -> int:
        return sum(file.size - _have(self, file) for file in self.files)

    def bytes_needed(self) -> int:
        if self.model.convert == "demucs":
            return 2 * self.model.approx_bytes  # demucs' own download, then our file
        converted = sum(file.size for file in self.files) if self.model.convert in CONVERTERS else 0
        return self.bytes_to_download() + converted


def fetch_models(names, folder_of: Callable[[str], Path], dtype: str = "bf16", progress: Progress | None = None,
                 say: Callable[[str], None] = print) -> list[Path]:
    """Install the named models (or groups) into `folder_of(model folder)`; returns their paths. Installed ones are
    skipped; everything is checked (names, the hub's files, disk space) before anything is written."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}; use bf16, or fp8 for a smaller transformer")
    plans, paths = [], []
    for model in expand_names(names):
        target = model.target(folder_of(model.folder), dtype)
        paths.append(target)
        if target.exists():
            say(f"{model.name}: already installed at {target}, skipped")
        else:
            plans.append(Plan(model, target, remote_files(model) if model.parts else []))
    check_disk_space(plans)
    for plan in plans:
        _install(plan, dtype, progress, say)
    return paths


# -- the hub's file list ------------------------------------------------------------------------------------------
def remote_files(model: HubModel) -> list[RemoteFile]:
    _refuse_offline()
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_endpoint())
    files = [file for part in model.parts for file in _part_files(api, model.source, part)]
    _refuse_same_place(model, files)
    return files


def _refuse_same_place(model: HubModel, files: list[RemoteFile]) -> None:
    first_at: dict[str, RemoteFile] = {}
    for file in files:
        first = first_at.setdefault(file.installed_as, file)
        if first is not file:
            raise ConfigError(f"{model.name}: {file.repo} files {first.path} and {file.path} would both be installed as "
                              f"{model.installed}/{file.installed_as}; give their RepoParts different `into` folders in "
                              "mtv_core/hub/registry.py")


def _refuse_offline() -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise ConfigError("HF_HUB_OFFLINE is set, so nothing can be downloaded; unset it to fetch models")


def _part_files(api, repo: str, part: RepoPart) -> list[RemoteFile]:
    where = f"{hub_endpoint()}/{repo}" + (f" folder {part.folder}/" if part.folder else "")
    try:
        entries = list(api.list_repo_tree(repo, path_in_repo=part.folder or None, revision=REVISION))
    except Exception as error:  # noqa: BLE001 (the hub client's errors differ by version; each becomes one line)
        raise ModelFileError(f"could not list {where}: {first_line(error)}; check the network, or HF_ENDPOINT if you "
                             "use a mirror") from None
    files = {entry.path.rsplit("/", 1)[-1]: entry for entry in entries if hasattr(entry, "size")}
    wanted = part.names or tuple(name for name in files if name.endswith(USABLE_SUFFIXES))
    missing = [name for name in wanted if name not in files]
    if missing or not wanted:
        raise ModelFileError(f"{where} lacks {', '.join(missing) or 'model files'} (it holds: "
                             f"{', '.join(sorted(files)[:8]) or 'nothing'}); the repository changed or the mirror is "
                             "incomplete: download the files by hand, or point HF_ENDPOINT at a full mirror")
    for name in wanted:
        relative_name(name, f"{where} listing")  # a mirror's names cannot climb out of the model's folder
    return [_remote_file(repo, files[name], part.into) for name in wanted]


def _remote_file(repo: str, entry, into: str) -> RemoteFile:
    lfs = entry.lfs
    sha256 = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
    return RemoteFile(repo, entry.path, int(entry.size), sha256, entry.blob_id, into)


# -- disk space ---------------------------------------------------------------------------------------------------
def check_disk_space(plans: list[Plan]) -> None:
    """Refuse before writing anything when a disk lacks room for what is left to download plus converted outputs."""
    needs: dict[int, tuple[Path, int, list[str]]] = {}
    for plan in plans:
        root = _existing_folder(plan.target.parent)
        device = os.stat(root).st_dev
        _, need, names = needs.get(device, (root, 0, []))
        freed = sum(temp.stat().st_size for temp in temp_files_beside(plan.target))  # removed before installing
        needs[device] = (root, need + plan.bytes_needed() - freed, [*names, plan.model.name])
    for root, need, names in needs.values():
        free = shutil.disk_usage(root).free
        if need > free:
            raise ConfigError(f"not enough disk space in {root}: fetching {', '.join(names)} needs {human_size(need)} "
                              f"(downloads and converted files) but {human_size(free)} is free; free some space or "
                              "choose another models folder")


def _existing_folder(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# -- installing -----------------------------------------------------------------------------------------------------
def _install(plan: Plan, dtype: str, progress: Progress | None, say) -> None:
    lock = _lock_target(plan.target)
    try:
        if plan.target.exists():  # a run that held the lock before this one installed it
            say(f"{plan.model.name}: already installed at {plan.target}, skipped")
            return
        _remove_temp_files_of_stopped_runs(plan, say)
        if plan.model.convert == "demucs":
            _install_demucs(plan, say)
        else:
            plan.stage.mkdir(parents=True, exist_ok=True)
            _download_all(plan, progress, say)
            if plan.model.convert in CONVERTERS:
                CONVERTERS[plan.model.convert](plan, dtype, progress, say)
                shutil.rmtree(plan.stage)
            else:
                _remove_other_partials(plan)
                os.replace(plan.stage, plan.target)  # the folder appears whole
        say(f"{plan.model.name}: installed {plan.target}")
    finally:
        lock.release()


def _lock_target(target: Path) -> FolderLock:
    """One fetch of a target at a time, so two runs never write into one download. The operating system releases the
    lock when its process ends, so a killed run does not block the next one."""
    name = f".{target.name}.fetch.lock"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        return FolderLock(target.parent, f"fetch of {target.name}", name=name)
    except GenerationError:
        raise GenerationError(f"another fetch of {target} is running (it holds the lock {target.parent / name}); wait "
                              "for it to finish, then run this fetch again: it skips what is installed") from None


def _remove_temp_files_of_stopped_runs(plan: Plan, say) -> None:
    """A run killed while writing the target (a conversion) leaves its temporary file behind; with the target's lock
    held, no other fetch is writing one now."""
    for temp in temp_files_beside(plan.target):
        say(f"{plan.model.name}: removing {temp.name} ({human_size(temp.stat().st_size)}), left by a stopped run")
        temp.unlink()


def _remove_other_partials(plan: Plan) -> None:
    """Partial downloads of other versions of the files (their names carry the content's hash) stay out of the
    installed folder."""
    for partial in plan.stage.rglob("*.incomplete"):
        partial.unlink()


def _download_all(plan: Plan, progress: Progress | None, say) -> None:
    total, before = sum(file.size for file in plan.files), 0
    for file in plan.files:
        final = plan.downloaded(file)
        if not final.exists():
            report = None if progress is None else (lambda done, base=before: progress(base + done, total))
            partial = plan.partial(file)
            partial.parent.mkdir(parents=True, exist_ok=True)
            download(file, partial, report)
            say(f"{plan.model.name}: checking {file.name} ({human_size(file.size)})")
            verify(file, partial)
            os.replace(partial, final)
        before += file.size


def _have(plan: Plan, file: RemoteFile) -> int:
    if plan.downloaded(file).exists():
        return file.size
    have = size_on_disk(plan.partial(file))
    return have if have <= file.size else 0  # a longer partial is discarded


# -- conversions ----------------------------------------------------------------------------------------------------
def _convert_official(plan: Plan, dtype: str, progress: Progress | None, say) -> None:
    import torch

    from ..checkpoints import convert_checkpoint

    source = plan.downloaded(plan.files[0])
    say(f"{plan.model.name}: converting {source.name} to {plan.target.name} ({dtype})")
    start = time.monotonic()
    report = convert_checkpoint(source, plan.target, dtype=torch.bfloat16, variant=plan.model.name, fp8=dtype == "fp8",
                                progress=progress)
    if not report.ok:
        raise ModelFileError(f"{source}: does not map onto the MTV model (missing {report.missing[:3]}, unexpected "
                             f"{report.unexpected[:3]}); it is kept there; report this with the file's size")
    peak = peak_rss_mib()
    say(f"{plan.model.name}: converted in {time.monotonic() - start:.0f} s"
        + ("" if peak is None else f"; peak memory of this process {peak:.0f} MiB"))


def _convert_vae_folder(plan: Plan, dtype: str, progress: Progress | None, say) -> None:
    """The diffusers VAE folder as one file, under the name the workflows load."""
    from ..checkpoints import convert_vae_folder

    convert_vae_folder(plan.stage, plan.target)


CONVERTERS = {"mtv": _convert_official, "vae": _convert_vae_folder}


def peak_rss_mib() -> float | None:
    """This process's peak resident memory, where the system reports it (not on Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # macOS counts bytes, Linux KiB


def _install_demucs(plan: Plan, say) -> None:
    """htdemucs through demucs' own loader (its download and cache), then written as this pack's demixer file."""
    from ..checkpoints import save_demixer

    try:
        from demucs.pretrained import get_model
    except ImportError as error:
        raise ConfigError("fetching the demixer needs the demucs package: pip install demucs") from error
    say(f"{plan.model.name}: fetching htdemucs with demucs' own loader")
    try:
        loaded = get_model("htdemucs")
    except Exception as error:  # noqa: BLE001 (demucs raises whatever its download path raises)
        raise ModelFileError(f"demucs could not fetch htdemucs ({first_line(error)}); check the network and try again") from None
    members = getattr(loaded, "models", [loaded])
    if len(members) != 1 or not hasattr(members[0], "_init_args_kwargs"):
        raise ModelFileError(f"demucs' htdemucs is a bag of {len(members)} models; this pack installs a single HTDemucs: "
                             "convert one model file with `python -m mtv_core convert-demixer`")
    save_demixer(members[0], plan.target, DEMUCS_SOURCE)
