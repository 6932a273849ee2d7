"""One file from the hub: downloaded into a partial file that a cut connection or a stopped run resumes (an HTTP
Range request), then checked against the hub's sha256 (LFS files) or git blob id before it is used.

The hub is `HF_ENDPOINT` (default https://huggingface.co), read when a download starts, so a mirror works.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from ..errors import ModelFileError
from ..fileio import file_sha256

DEFAULT_ENDPOINT = "https://huggingface.co"
REVISION = "main"
ATTEMPTS = 5  # per run; each attempt resumes where the previous one stopped
CHUNK = 1 << 20
TIMEOUT_SECONDS = 60


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


@dataclass(frozen=True)
class RemoteFile:
    repo: str
    path: str
    size: int
    sha256: str | None  # LFS files
    blob_id: str  # git's id of the blob: the check for small files kept in git
    into: str = ""  # the subfolder of the model's folder it is installed in

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def installed_as(self) -> str:
        return f"{self.into}/{self.name}" if self.into else self.name

    @property
    def partial_name(self) -> str:
        """Keyed by content, so a partial download of another version of the file is never resumed."""
        return f"{self.name}.{(self.sha256 or self.blob_id)[:12]}.incomplete"


def download(file: RemoteFile, partial: Path, report: Callable[[int], None] | None = None) -> None:
    """Bring `partial` up to the file's full size, resuming (an HTTP Range request) from what it holds."""
    from huggingface_hub import hf_hub_url

    url = hf_hub_url(file.repo, file.path, revision=REVISION, endpoint=hub_endpoint())
    problem = None
    for _ in range(ATTEMPTS):
        if size_on_disk(partial) > file.size:  # not this file: two runs appended to it at once
            partial.unlink()
        if size_on_disk(partial) == file.size:
            break
        try:
            _get(url, file, partial, report)
        except HTTPError as error:
            if error.code == 416:  # the partial is longer than the file: start again
                partial.unlink(missing_ok=True)
            elif error.code < 500:
                raise ModelFileError(f"{url}: the hub answered {error.code} {error.reason}; check the name, your access "
                                     "to the repository, or HF_ENDPOINT") from None
            problem = error
        except (OSError, HTTPException) as error:
            problem = error
    if (have := size_on_disk(partial)) != file.size:
        raise ModelFileError(f"{file.repo}/{file.path}: the download stopped at {have} of {file.size} bytes "
                             f"({first_line(problem) if problem else 'the server sent more than the hub lists'}); "
                             "run the same fetch again to resume it")


def size_on_disk(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _get(url: str, file: RemoteFile, partial: Path, report) -> None:
    from huggingface_hub.utils import build_hf_headers, tqdm

    done = size_on_disk(partial)
    headers = build_hf_headers()
    token = headers.pop("authorization", None)
    request = Request(url, headers={**headers, **({"Range": f"bytes={done}-"} if done else {})})
    if token:
        request.add_unredirected_header("Authorization", token)  # never sent on to the storage the hub redirects to
    with urlopen(request, timeout=TIMEOUT_SECONDS) as response, open(partial, "ab") as handle:
        if done and response.status != 206:  # the server ignored the range: take the whole file
            handle.truncate(0)
            done = 0
        with tqdm(total=file.size, initial=done, unit="B", unit_scale=True, desc=file.name) as bar:
            while (chunk := response.read(CHUNK)) and done + len(chunk) <= file.size:
                handle.write(chunk)
                done += len(chunk)
                bar.update(len(chunk))
                if report is not None:
                    report(done)


def verify(file: RemoteFile, path: Path) -> None:
    """The downloaded file has the hub's size and sha256 (LFS) or git blob id; a bad copy is removed."""
    what, expected = ("sha256", file.sha256) if file.sha256 else ("git blob id", file.blob_id)
    size = path.stat().st_size
    got = file_sha256(path) if file.sha256 else git_blob_id(path)
    if size != file.size or got != expected:
        path.unlink()
        raise ModelFileError(f"{file.repo}/{file.path}: the download does not match the hub's {what} (expected "
                             f"{expected}, {file.size} bytes; got {got}, {size} bytes); the bad copy was removed: fetch "
                             "again, and if it repeats check HF_ENDPOINT or your proxy")


def git_blob_id(path: Path) -> str:
    """git's object id of a file's content (sha1 of 'blob <size>\\0' + content)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200] if text else ''}"
