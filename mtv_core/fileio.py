"""Files: atomic writes (the output appears whole or not at all, with ordinary permissions) and names that
cannot leave their folder."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path, PurePosixPath

from .errors import ConfigError


def temp_file_beside(path: Path) -> tuple[int, str]:
    """(fd, name) of a new temporary file in `path`'s folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


def temp_files_beside(path: Path) -> list[Path]:
    """The temporary files `temp_file_beside(path)` makes (mkstemp adds 8 characters of [a-z0-9_]) that exist now:
    what a killed writer of `path` left behind, or what a running one is writing."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    if not path.parent.is_dir():
        return []
    return [file for file in path.parent.iterdir() if pattern.fullmatch(file.name) and file.is_file()]


def publish(temp: str, path: Path) -> None:
    """Give the finished temp file ordinary permissions (mkstemp and some writers make 0600), then rename it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    os.replace(temp, path)


def atomic_write(path, write) -> Path:
    """Run `write(temp_name)` on a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    fd, temp = temp_file_beside(path)
    os.close(fd)
    try:
        write(temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        publish(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def relative_name(name, what: str) -> PurePosixPath:
    """A user-given relative name ("sub/file.wav") checked so that it cannot leave the folder it is joined to:
    no absolute path, no "..", no empty or hidden-by-dots tricks, no NUL or backslash."""
    fix = f"give a name inside the {what} (e.g. 'song.wav' or 'folder/song.wav')"
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{what}: the name {name!r} is empty or not text; {fix}")
    if "\x00" in name or "\\" in name or len(name) > 1024:
        raise ConfigError(f"{what}: the name {name[:80]!r} has a NUL or a backslash, or is over 1024 characters; {fix}")
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("..", ".") for part in name.split("/")):
        raise ConfigError(f"{what}: the name {name!r} is absolute or has '.' or '..' parts, which could leave the folder; {fix}")
    return path


def contained_path(root, name, what: str) -> Path:
    """`root / name` for a name that passes `relative_name`. Symbolic links the owner of the folder made are
    followed as usual; the name itself cannot climb out."""
    return Path(root) / relative_name(name, what)


def file_sha256(path, block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


class FolderLock:
    """An exclusive lock on a folder while a process works in it: a hidden `.lock` file, locked by the operating
    system (so a killed process releases it) and removed on release. A second process is refused at once, with a
    message naming the holder. `name` is the lock file's name in the folder, for several locks in one folder."""

    def __init__(self, folder: Path, what: str, name: str = ".lock"):
        self.path = Path(folder) / name
        for _ in range(3):
            self.handle = open(self.path, "a+")
            self.handle.seek(0)
            try:
                _lock(self.handle)
            except OSError:
                self.handle.seek(0)
                holder = self.handle.read().strip() or "another process"
                self.handle.close()
                from .errors import GenerationError

                raise GenerationError(f"{what} {str(folder)!r} is in use by {holder}; wait for that run to finish, "
                                      "or choose another folder") from None
            if self.path.exists() and os.path.samestat(os.fstat(self.handle.fileno()), os.stat(self.path)):
                break
            self.handle.close()  # the holder removed the file while we opened it: lock the new one
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"process {os.getpid()}")
        self.handle.flush()

    def release(self) -> None:
        if not self.handle.closed:
            self.path.unlink(missing_ok=True)
            self.handle.close()


def _lock(handle) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
