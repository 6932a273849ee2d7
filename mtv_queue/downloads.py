"""The files a finished prompt saved, downloaded from a server that is not trusted: each streamed to disk under a
size limit, and a name it gives can neither leave the output folder, hide, nor replace a file."""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path

from mtv_core.errors import ConfigError, GenerationError
from mtv_core.fileio import relative_name, temp_file_beside

from .server_http import ServerHTTP

OUTPUT_KINDS = ("images", "videos", "gifs", "audio", "files")
_ODD_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def download_outputs(http: ServerHTTP, history: dict, out_dir, limit: int) -> list[Path]:
    """Every file the prompt saved, into out_dir/<subfolder>/<name>, at most `limit` bytes each; an existing file is
    never replaced (a new name is chosen), and a name that is hidden, odd or climbs out of out_dir is refused."""
    out_dir = Path(out_dir)
    saved = []
    for item in output_items(history):
        target = unique_path(out_dir / _safe_subfolder(item["subfolder"]) / _safe_file_name(item["filename"]))
        query = urllib.parse.urlencode({key: item[key] for key in ("filename", "subfolder", "type")})
        saved.append(_download(http, f"/view?{query}", target, limit))
    return saved


def output_items(history: dict) -> list[dict]:
    """The saved-file entries of a history entry, each checked to be {filename, subfolder, type} strings."""
    outputs = history.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise GenerationError(f"the server's history lists outputs as a {type(outputs).__name__}, not a mapping")
    items = []
    for node_output in outputs.values():
        for kind in OUTPUT_KINDS if isinstance(node_output, dict) else ():
            for item in node_output.get(kind) or []:
                if isinstance(item, dict) and "filename" in item:
                    entry = {"filename": item["filename"], "subfolder": item.get("subfolder", ""), "type": item.get("type", "output")}
                    if not all(isinstance(value, str) for value in entry.values()):
                        raise GenerationError(f"the server named an output with a non-text value: {str(item)[:200]}")
                    items.append(entry)
    return items


def unique_path(path: Path) -> Path:
    """`path`, or `name (2).ext`, `name (3).ext`, ... if it exists."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem} ({number}){path.suffix}")
    return candidate


def _download(http: ServerHTTP, path: str, target: Path, limit: int) -> Path:
    fd, temp = temp_file_beside(target)
    try:
        with os.fdopen(fd, "wb") as sink:
            answer = http.save(path, sink, limit)
        if not answer.ok:
            raise GenerationError(f"the server could not send {target.name} (HTTP {answer.status})")
        _publish_new(temp, target)
    finally:
        Path(temp).unlink(missing_ok=True)
    return target


def _safe_file_name(name: str) -> str:
    if not name or name in (".", "..") or name.startswith(".") or len(name) > 255 or _ODD_NAME.search(name):
        raise GenerationError(f"the server named an output {name[:80]!r}: hidden, empty, too long or with a path "
                              "or control character; refused")
    return name


def _safe_subfolder(subfolder: str) -> Path:
    if not subfolder:
        return Path()
    try:
        relative = relative_name(subfolder, "output folder")
    except ConfigError as error:
        raise GenerationError(f"the server named an output subfolder {subfolder[:80]!r}; refused ({error})") from None
    if any(part.startswith(".") for part in relative.parts):
        raise GenerationError(f"the server named a hidden output subfolder {subfolder[:80]!r}; refused")
    return Path(*relative.parts)


def _publish_new(temp: str, target: Path) -> None:
    """Rename into place without replacing anything that appeared meanwhile (a hard link fails if it exists)."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise GenerationError(f"{target} appeared while downloading; kept it and discarded the download") from None
    except OSError:
        if target.exists():
            raise GenerationError(f"{target} appeared while downloading; kept it and discarded the download") from None
        os.replace(temp, target)
    os.chmod(target, 0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
