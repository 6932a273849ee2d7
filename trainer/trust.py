"""Which checkpoint folders a resume may read. accelerate, torch distributed checkpoints (FSDP2's `.metadata`) and
DeepSpeed unpickle files of the engine state, and unpickling runs whatever code a file names. So a folder is read
only when it verifies: its `manifest.json` lists every file with its size and sha256, authenticated (HMAC-SHA256)
with a key that stays on the user's machine. A folder from elsewhere fails that check and is refused unless the
user passes --trust-checkpoint.

The key is the file named by MTV_CHECKPOINT_KEY, else ~/.config/mtv/checkpoint.key (created, mode 0600, at the first
save). Machines that resume each other's checkpoints share that file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from mtv_core.fileio import atomic_write, file_sha256

from .errors import TrainerError

MANIFEST = "manifest.json"
KEY_ENV = "MTV_CHECKPOINT_KEY"
MANIFEST_LIMIT = 16 << 20  # bytes; a manifest lists files, it is never large
TRUST_HINT = ("if you know where this folder comes from and trust it, pass --trust-checkpoint (files in it can run "
              "code when loaded)")


class UntrustedCheckpoint(TrainerError):
    pass


def key_path() -> Path:
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV])
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "mtv" / "checkpoint.key"


def _key(create: bool) -> bytes | None:
    path = key_path()
    if not path.is_file() and create:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if len(text) < 32:
        raise TrainerError(f"{path}: the checkpoint key is too short ({len(text)} characters); delete it to have a new "
                           f"one made, or point {KEY_ENV} at the key file your other machines use")
    return text.encode()


def _mac(key: bytes, files: dict) -> str:
    return hmac.new(key, json.dumps(files, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def _contents(folder: Path) -> dict[str, Path]:
    """Every file under `folder` by its relative name (the manifest aside); links and other specials refused."""
    found = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise UntrustedCheckpoint(f"{folder}: {name} is a link or special file, which a checkpoint never holds; "
                                      f"{TRUST_HINT}")
        if path.is_file() and name != MANIFEST:
            found[name] = path
    return found


def write_manifest(folder: Path) -> None:
    """Sign every file of a checkpoint folder the trainer has just written."""
    files = {name: {"size": path.stat().st_size, "sha256": file_sha256(path)} for name, path in _contents(folder).items()}
    document = {"format": 1, "files": files, "hmac": _mac(_key(create=True), files)}
    atomic_write(folder / MANIFEST, lambda temp: Path(temp).write_text(json.dumps(document, indent=1)))


def verify_folder(folder: Path) -> None:
    """Raise UntrustedCheckpoint, naming the file, unless `folder` is exactly what this machine's trainer signed."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise UntrustedCheckpoint(f"{manifest}: missing, so nothing shows this folder was written by this machine's "
                                  f"trainer; {TRUST_HINT}")
    files = _signed_files(manifest)
    present = _contents(folder)
    for name in sorted(present.keys() | files.keys()):
        if name not in files:
            raise UntrustedCheckpoint(f"{folder / name}: not in the folder's signed manifest (added later); {TRUST_HINT}")
        if name not in present:
            raise UntrustedCheckpoint(f"{folder / name}: listed in the manifest but missing; the folder is incomplete")
        entry, path = files[name], present[name]
        if path.stat().st_size != entry.get("size") or file_sha256(path) != entry.get("sha256"):
            raise UntrustedCheckpoint(f"{folder / name}: changed since the trainer wrote it (size or sha256 differ "
                                      f"from the signed manifest); {TRUST_HINT}")


def _signed_files(manifest: Path) -> dict:
    key = _key(create=False)
    if key is None:
        raise UntrustedCheckpoint(f"{manifest}: no checkpoint key at {key_path()} to check it with (the folder comes "
                                  f"from another machine?); copy that machine's key there or set {KEY_ENV}, or "
                                  f"{TRUST_HINT}")
    if manifest.stat().st_size > MANIFEST_LIMIT:
        raise UntrustedCheckpoint(f"{manifest}: {manifest.stat().st_size} bytes, too large for a manifest; {TRUST_HINT}")
    try:
        document = json.loads(manifest.read_text())
        files, mac = document["files"], document["hmac"]
    except (ValueError, KeyError, TypeError) as error:
        raise UntrustedCheckpoint(f"{manifest}: unreadable ({error}); {TRUST_HINT}") from None
    if not isinstance(files, dict) or not isinstance(mac, str) or not hmac.compare_digest(_mac(key, files), mac):
        raise UntrustedCheckpoint(f"{manifest}: its signature does not match this machine's checkpoint key "
                                  f"({key_path()}): written elsewhere or edited; {TRUST_HINT}")
    return files
