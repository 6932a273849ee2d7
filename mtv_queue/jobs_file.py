"""The jobs file (CSV, one job a line), checked whole before anything is queued, then read again a job at a time
while they are queued, so memory does not grow with its length. A job is the few inputs its line sets; its graph
is built only when it is sent."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mtv_core.errors import ConfigError
from mtv_core.spec import AUDIO_SUFFIXES

from .job_columns import cell_value, column_targets
from .jobs_csv import numbered_rows
from .options import ALLOW_OUTSIDE, JOBS, OUT

CHECKED_AUDIO_KEPT = 1024  # audio files whose check is remembered (a file named on many lines is checked once)
_JOB_NAME = re.compile(r"\w[\w.\- ]{0,99}")


@dataclass
class Job:
    """One line of the jobs file: what it changes in the workflow, not a copy of the workflow."""

    name: str
    audio: Path
    line: int
    overrides: dict  # (node id, input name) -> value, for the cells of this line that are not empty
    audio_input: tuple[str, str]  # (node id, input name) that gets the uploaded audio's name
    tried: list[str] = field(default_factory=list)
    first_failure: str = ""

    def graph_for(self, workflow: dict, uploaded_name: str) -> dict:
        """The workflow with this job's inputs, its audio input set to the name the server gave the upload."""
        graph = copy.deepcopy(workflow)
        for (node_id, input_name), value in self.overrides.items():
            graph[node_id].setdefault("inputs", {})[input_name] = value
        node_id, input_name = self.audio_input
        graph[node_id].setdefault("inputs", {})[input_name] = uploaded_name
        return graph


def read_jobs(path, graph: dict, declared_inputs=None, allow_outside: bool = False) -> JobsFile:
    """The CSV at `path`, every line checked; the first problem is a ConfigError naming its line and column.
    Audio paths are relative to the jobs file's folder and must stay in it unless `allow_outside`; an empty cell
    keeps the workflow's value."""
    return JobsFile(path, graph, declared_inputs, allow_outside)


class JobsFile:
    """A checked jobs file. Checking reads it once and keeps only its header (and the job names, to refuse one used
    twice); iterating reads it again and yields one Job at a time (refusing a file changed since the check)."""

    def __init__(self, path, workflow: dict, declared_inputs=None, allow_outside: bool = False):
        self.path, self.workflow, self.allow_outside = Path(path), copy.deepcopy(workflow), allow_outside
        self.folder = self.path.parent.resolve()
        self.declared_inputs = functools.cache(declared_inputs) if declared_inputs is not None else None
        self.checked_audio = functools.lru_cache(CHECKED_AUDIO_KEPT)(self._checked_audio)
        self.checked_as = None  # the file's inode, size and times as checked: a later read refuses another
        self.header: list[str] = []
        self.targets: dict[str, tuple[str, str]] = {}  # column -> (node id, input name) it sets
        before_the_check = self._signature()
        self.count = self._check()
        self.checked_as = before_the_check

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Job]:
        rows = self._rows()
        _, header = next(rows)
        if [name.strip() for name in header] != self.header:
            raise self._changed()
        count = 0
        for line, cells in rows:
            count += 1
            yield self._job(line, cells)
        if count != self.count:
            raise self._changed()

    def names(self) -> Iterator[str]:
        """Every job's name, in order (a quick read: the lines are not checked again)."""
        rows = self._rows()
        next(rows)
        return (self._job_name(line, cells) for line, cells in rows)

    def _check(self) -> int:
        """Checks the header and every line; the number of jobs."""
        rows = self._rows()
        first = next(rows, None)
        if first is None:
            raise ConfigError(f"{JOBS} {str(self.path)!r} is empty; write a header line (audio,prompt,seed) and one "
                              "job a line")
        header_line, header = first
        self.header = [name.strip() for name in header]
        self.targets = column_targets(self.header, self.workflow, self.declared_inputs,
                                      f"{self.path} line {header_line}")
        seen: set[str] = set()  # the names so far, casefolded: each names a folder
        count = 0
        for line, cells in rows:
            name = self._job(line, cells).name.casefold()
            if name in seen:
                raise ConfigError(f"{self.path} line {line}, column 'job': the name {self._job_name(line, cells)!r} "
                                  f"is also on line {self._first_line_named(name)}; give every job its own name "
                                  "(it names its folder)")
            if "job" in self.header:  # else every name is its line number, and none repeats
                seen.add(name)
            count += 1
        if not count:
            raise ConfigError(f"{JOBS} {str(self.path)!r} has a header but no jobs; add one job a line")
        return count

    def _first_line_named(self, casefolded: str) -> int:
        rows = self._rows()
        next(rows)
        return next(line for line, cells in rows if self._job_name(line, cells).casefold() == casefolded)

    # - reading -
    def _signature(self) -> tuple:
        try:
            stat = self.path.stat()
        except OSError as error:
            raise self._unreadable(error) from error
        return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns

    def _unreadable(self, error: OSError) -> ConfigError:
        return ConfigError(f"{JOBS} {str(self.path)!r}: cannot read it ({error}); give a UTF-8 CSV file")

    def _changed(self) -> ConfigError:
        return ConfigError(f"{JOBS} {str(self.path)!r} changed after it was checked; run the command again to check "
                           "it anew (finished jobs are kept)")

    def _rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line number, cells) of every line that is not blank, read as a stream."""
        if self.checked_as is not None and self._signature() != self.checked_as:
            raise self._changed()
        try:
            with open(self.path, "rb") as handle:
                for line, cells in numbered_rows(handle, self.path):
                    if any(cell.strip() for cell in cells):
                        yield line, cells
        except OSError as error:
            raise self._unreadable(error) from error

    # - a line -
    def _job(self, line: int, cells: list[str]) -> Job:
        where = f"{self.path} line {line}"
        if len(cells) > len(self.header):
            raise ConfigError(f"{where}: {len(cells)} cells under a header of {len(self.header)} columns; quote "
                              "cells that hold commas (\"a, b\")")
        values = dict(zip(self.header, cells))
        name = self._job_name(line, cells)
        audio = self._audio(values.get("audio", "").strip(), where)
        overrides = {self.targets[column]: cell_value(column, cell, where) for column, cell in values.items()
                     if column not in ("job", "audio") and cell.strip()}
        return Job(name, audio, line, overrides, self.targets["audio"])

    def _job_name(self, line: int, cells: list[str]) -> str:
        column = self.header.index("job") if "job" in self.header else len(cells)
        name = (cells[column] if column < len(cells) else "").strip() or str(line)
        if not _JOB_NAME.fullmatch(name) or name.casefold() == "summary.csv":
            raise ConfigError(f"{self.path} line {line}, column 'job': {name[:80]!r} cannot name a folder in {OUT}; "
                              "use letters, digits, '-', '_', '.' or spaces, at most 100, not starting with '.'")
        return name

    def _audio(self, cell: str, where: str) -> Path:
        if not cell:
            raise ConfigError(f"{where}, column 'audio': empty; give the job's audio file")
        try:
            return self.checked_audio(cell)
        except ConfigError as error:
            raise ConfigError(f"{where}, column 'audio': {error}") from None

    def _checked_audio(self, cell: str) -> Path:
        """The audio file a cell names, once it is known to be a sound file the batch may upload."""
        audio = self.path.parent / cell
        try:
            real = audio.resolve()
        except (OSError, RuntimeError) as error:
            raise ConfigError(f"{cell!r} cannot be followed ({error}); give a plain file") from None
        if not self.allow_outside and not real.is_relative_to(self.folder):
            raise ConfigError(f"{cell!r} is outside the jobs file's folder {self.folder} (it is {real}); move the "
                              f"file into that folder, or pass {ALLOW_OUTSIDE} to upload files from anywhere")
        if not real.is_file():
            raise ConfigError(f"no file {cell!r} (looked for {audio}); give a path relative to the jobs file's folder")
        if audio.suffix.lower() not in AUDIO_SUFFIXES:
            raise ConfigError(f"{cell!r} is not named as audio or video; give a {', '.join(AUDIO_SUFFIXES)} file")
        problem = sound_problem(real)
        if problem:
            raise ConfigError(f"{cell!r} {problem}; give an audio or video file with sound")
        return audio


def sound_problem(path: Path) -> str:
    """Why the file holds no sound FFmpeg can decode, or "" when it has an audio stream. Reads only the header
    (PyAV, as mtv_core.audio.probe_audio does, without loading torch)."""
    try:
        import av
    except ImportError:
        return "cannot be checked: PyAV is not installed (pip install av)"
    try:
        with av.open(str(path), "r") as container:
            streams = container.streams.audio
            rate = streams[0].codec_context.sample_rate if streams and streams[0].codec_context else 0
    except (av.FFmpegError, OSError, ValueError) as error:
        return f"is not an audio or video file FFmpeg can read ({error})"
    if not streams:
        return "has no audio stream"
    return "" if rate and rate > 0 else "has an audio codec FFmpeg here cannot decode"
