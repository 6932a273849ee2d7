"""Many jobs on many ComfyUI servers.

A jobs file (CSV, one job a line) is checked whole, and every server is checked for the nodes and model files the
workflow names, before anything is queued. The check keeps no job: the file is read again, a job at a time, while
they are queued, so memory does not grow with its length; a job is the few inputs its line sets, and its graph is
built only when it is sent. Each job goes to the least busy server with a free slot; a job that fails there is
retried once on another server. Outputs land in OUT/<job>/, and OUT/summary.csv is rewritten after every job, so a
stopped batch resumes: a job with outputs and no error in the summary (and its files still there) is not run again.
"""

from __future__ import annotations

import copy
import csv
import functools
import itertools
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..spec import AUDIO_SUFFIXES
from ..errors import ConfigError, GenerationError, MTVError
from ..fileio import FolderLock, atomic_write, file_sha256
from .client import DEFAULT_MAX_DOWNLOAD, ComfyClient, unique_path
from .workflow import find_input, override_value

NAMED_COLUMNS = ("job", "audio", "prompt", "seed")
SUMMARY_COLUMNS = ("job", "server", "seconds", "output", "error", "retried")
AUDIO_LOADERS = ("MTVLoadAudio", "LoadAudio")
PROMPT_INPUTS = {"MTVTextEncode": "scene"}
CHECK_SECONDS = 30.0
PROBE_SECONDS = 10.0
INCOMING = ".incoming"  # OUT/.incoming/<job>/: one attempt's downloads until the job has finished
MAX_LINE_BYTES = 2**20
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


# -- the jobs file ----------------------------------------------------------------------------------------------
def read_jobs(path, graph: dict, declared_inputs=None, allow_outside: bool = False) -> JobsFile:
    """The CSV at `path`, every line checked; the first problem is a ConfigError naming its line and column.
    Audio paths are relative to the jobs file's folder and must stay in it unless `allow_outside`; an empty cell
    keeps the workflow's value."""
    return JobsFile(path, graph, declared_inputs, allow_outside)


class JobsFile:
    """A checked jobs file. Checking reads it once and keeps only its header; iterating reads it again and yields
    one Job at a time (refusing a file changed since the check)."""

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
            raise ConfigError(f"--jobs {str(self.path)!r} is empty; write a header line (audio,prompt,seed) and one "
                              "job a line")
        header_line, header = first
        self.header = [name.strip() for name in header]
        self.targets = self._column_targets(f"{self.path} line {header_line}")
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
            raise ConfigError(f"--jobs {str(self.path)!r} has a header but no jobs; add one job a line")
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
            raise ConfigError(f"--jobs {str(self.path)!r}: cannot read it ({error}); give a UTF-8 CSV file") from error
        return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns

    def _changed(self) -> ConfigError:
        return ConfigError(f"--jobs {str(self.path)!r} changed after it was checked; run the command again to check "
                           "it anew (finished jobs are kept)")

    def _rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line number, cells) of every line that is not blank, read as a stream. Malformed CSV is refused with
        its line: a quote that never closes, text after a closing quote, a cell that runs over several lines."""
        if self.checked_as is not None and self._signature() != self.checked_as:
            raise self._changed()
        try:
            with open(self.path, "rb") as handle:
                for line, cells in _csv_lines(csv.reader(_text_lines(handle, self.path), strict=True), self.path):
                    if any(cell.strip() for cell in cells):
                        yield line, cells
        except OSError as error:
            raise ConfigError(f"--jobs {str(self.path)!r}: cannot read it ({error}); give a UTF-8 CSV file") from error

    # - the header -
    def _column_targets(self, where: str) -> dict[str, tuple[str, str]]:
        """The (node id, input) each column sets, after checking every column name; two columns may not set one
        input."""
        for column in self.header:
            if self.header.count(column) > 1:
                raise ConfigError(f"{where}: the column {column!r} appears twice; keep one")
            if column not in NAMED_COLUMNS and "." not in column:
                raise ConfigError(f"{where}: unknown column {column!r}; columns are job, audio, prompt, seed and "
                                  "NODE.INPUT overrides such as 10.steps or MTVChainSegments.steps")
        if "audio" not in self.header:
            raise ConfigError(f"{where}: no 'audio' column; add one with each job's audio file")
        targets, column_of = {}, {}
        for column in self.header:
            if column == "job":
                continue
            target = self._column_target(column, where)
            if target in column_of:
                node_id, input_name = target
                raise ConfigError(f"{where}: the columns {column_of[target]!r} and {column!r} both set node {node_id} "
                                  f"({self.workflow[node_id]['class_type']}) input {input_name!r}; keep one of them")
            targets[column], column_of[target] = target, column
        return targets

    def _column_target(self, column: str, where: str) -> tuple[str, str]:
        finders = {"audio": _audio_input, "prompt": _prompt_input, "seed": _seed_input}
        if column in finders:
            return finders[column](self.workflow, where)
        try:
            return find_input(self.workflow, column, self.declared_inputs)
        except ConfigError as error:
            raise ConfigError(f"{where}, column {column!r}: {error}") from None

    # - a line -
    def _job(self, line: int, cells: list[str]) -> Job:
        where = f"{self.path} line {line}"
        if len(cells) > len(self.header):
            raise ConfigError(f"{where}: {len(cells)} cells under a header of {len(self.header)} columns; quote "
                              "cells that hold commas (\"a, b\")")
        values = dict(zip(self.header, cells))
        name = self._job_name(line, cells)
        audio = self._audio(values.get("audio", "").strip(), where)
        overrides = {self.targets[column]: _cell_value(column, cell, where) for column, cell in values.items()
                     if column not in ("job", "audio") and cell.strip()}
        return Job(name, audio, line, overrides, self.targets["audio"])

    def _job_name(self, line: int, cells: list[str]) -> str:
        column = self.header.index("job") if "job" in self.header else len(cells)
        name = (cells[column] if column < len(cells) else "").strip() or str(line)
        if not _JOB_NAME.fullmatch(name) or name.casefold() == "summary.csv":
            raise ConfigError(f"{self.path} line {line}, column 'job': {name[:80]!r} cannot name a folder in --out; "
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
                              "file into that folder, or pass --allow-outside to upload files from anywhere")
        if not real.is_file():
            raise ConfigError(f"no file {cell!r} (looked for {audio}); give a path relative to the jobs file's folder")
        if audio.suffix.lower() not in AUDIO_SUFFIXES:
            raise ConfigError(f"{cell!r} is not named as audio or video; give a {', '.join(AUDIO_SUFFIXES)} file")
        problem = sound_problem(real)
        if problem:
            raise ConfigError(f"{cell!r} {problem}; give an audio or video file with sound")
        return audio


def _csv_lines(reader, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each row; malformed CSV, text that is not UTF-8 and cells that hold a line break are
    refused with the line where their row begins."""
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise ConfigError(_malformed(path, line, reader.line_num, error)) from None
        if reader.line_num > line or any("\n" in cell or "\r" in cell for cell in cells):
            raise ConfigError(f"{path} line {line}: a quoted cell runs over several lines (to line {reader.line_num}); "
                              "close the quote on the line it opens (a cell cannot hold a line break)")
        yield line, cells
        line = reader.line_num + 1


def _text_lines(handle, path: Path) -> Iterator[str]:
    """The file's lines as text, one at a time (at most MAX_LINE_BYTES each), so a byte that is not UTF-8 is
    refused on its line."""
    for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), 1):
        if len(raw) > MAX_LINE_BYTES:
            raise ConfigError(f"{path} line {number}: longer than {MAX_LINE_BYTES} bytes; a job takes one short line")
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError(f"{path} line {number}: not UTF-8 text ({error}); save the file as UTF-8") from None


def _malformed(path: Path, line: int, last_line: int, error: csv.Error) -> str:
    if str(error) == "unexpected end of data":
        return (f"{path} line {line}: a quote opened on this line never closes (the file ends first); close it, "
                "and write a quote inside a quoted cell as \"\"")
    if last_line > line:
        return (f"{path} line {line}: a quoted cell runs over several lines (to line {last_line}: {error}); close "
                "the quote on the line it opens")
    return (f"{path} line {line}: not valid CSV ({error}); quote a whole cell (\"a, b\") and write a quote inside "
            "it as \"\"")


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


def _cell_value(column: str, cell: str, where: str):
    if column == "seed":
        return _seed(cell, where)
    return cell if column == "prompt" else override_value(cell)


def _only(graph: dict, found: list[str], what: str, where: str, fix: str) -> str:
    if len(found) != 1:
        nodes = ", ".join(f"{i} ({graph[i]['class_type']})" for i in found) or "none"
        raise ConfigError(f"{where}: the workflow needs exactly one {what} for this column, it has {nodes}; {fix}")
    return found[0]


def _audio_input(graph: dict, where: str) -> tuple[str, str]:
    loaders = [i for i, node in graph.items() if node["class_type"] in AUDIO_LOADERS]
    titled = [i for i in loaders if (graph[i].get("_meta") or {}).get("title") == "Soundtrack"]
    node_id = _only(graph, loaders if len(loaders) == 1 else titled, "Load Audio node (or one titled 'Soundtrack')",
                    where, "title the soundtrack's node 'Soundtrack'")
    return node_id, "audio"


def _prompt_input(graph: dict, where: str) -> tuple[str, str]:
    encoders = [i for i, node in graph.items() if node["class_type"] in PROMPT_INPUTS]
    node_id = _only(graph, encoders, "text encode node", where, "name the input in a column instead, e.g. 8.scene")
    return node_id, PROMPT_INPUTS[graph[node_id]["class_type"]]


def _seed_input(graph: dict, where: str) -> tuple[str, str]:
    seeded = [i for i, node in graph.items() if "seed" in (node.get("inputs") or {})]
    return _only(graph, seeded, "node with a seed", where, "name the input in a column instead, e.g. 10.seed"), "seed"


def _seed(cell: str, where: str) -> int:
    try:
        seed = int(cell)
    except ValueError:
        seed = -1
    if not 0 <= seed < 2**64:
        raise ConfigError(f"{where}, column 'seed': {cell!r} is not a whole number from 0 to 2^64-1; write e.g. 7")
    return seed


def upload_name(audio: Path) -> str:
    """The audio's name on the server, with a piece of its hash: two jobs' different files of one name cannot
    replace each other there, and the same file keeps one name."""
    return f"{audio.stem}-{file_sha256(audio)[:12]}{audio.suffix}"


# -- the servers ------------------------------------------------------------------------------------------------
def check_servers(servers: list[str], graph: dict, skip_bad: bool = False, report=print) -> list[str]:
    """The servers that can run the workflow. One that cannot (unreachable, without the nodes or the model files)
    refuses the batch, or with `skip_bad` is left out, as long as one server remains."""
    problems = {server: server_problem(server, graph) for server in servers}
    bad = {server: problem for server, problem in problems.items() if problem}
    if bad and (not skip_bad or len(bad) == len(servers)):
        hint = "" if len(bad) == len(servers) else "\n(--skip-bad-servers runs the jobs on the others)"
        raise GenerationError("\n".join(bad.values()) + hint)
    for problem in bad.values():
        report(f"skipping a server: {problem}")
    return [server for server in servers if server not in bad]


def server_problem(server: str, graph: dict) -> str:
    """Why `server` cannot run `graph`, in one line, or "" when it can."""
    try:
        info = ComfyClient(server, timeout=CHECK_SECONDS).object_info()
    except GenerationError as error:
        return str(error)
    missing = sorted({node["class_type"] for node in graph.values()} - set(info))
    if missing:
        return (f"{server} has no node {', '.join(missing)}; install the MTV pack (custom_nodes/comfyui-mtv) or update "
                "ComfyUI there, then restart it")
    absent = [f"{value!r} (node {node_id} {node['class_type']}, input {name})"
              for node_id, node in graph.items() if "Loader" in node["class_type"]
              for name, value in (node.get("inputs") or {}).items()
              if isinstance(value, str) and value not in choices(info, node["class_type"], name, value)]
    if absent:
        return f"{server} has no model file {', '.join(absent)}; put the files in its model folders, then restart it"
    return ""


def choices(info: dict, class_type: str, name: str, value: str) -> list:
    """The choice list /object_info declares for an input (old `[[...], {...}]` or new `["COMBO", {"options"}]`
    form); `[value]` when the input has no list, so only lists are checked."""
    node = info.get(class_type)
    inputs = node.get("input") if isinstance(node, dict) else None
    sections = inputs.values() if isinstance(inputs, dict) else ()
    spec = next((section[name] for section in sections if isinstance(section, dict) and name in section), None)
    if not isinstance(spec, list) or not spec:
        return [value]
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict) and isinstance(spec[1].get("options"), list):
        return spec[1]["options"]
    return [value]


# -- the summary ------------------------------------------------------------------------------------------------
class Summary:
    """OUT/summary.csv: a row per job (earlier runs' rows kept), rewritten whole and atomically after every job."""

    def __init__(self, out: Path):
        self.out, self.path = out, out / "summary.csv"
        self.rows = self._read() if self.path.exists() else {}

    def _read(self) -> dict[str, dict]:
        try:
            with open(self.path, newline="", encoding="utf-8") as handle:
                return {row["job"]: row for row in csv.DictReader(handle) if row.get("job")}
        except (OSError, UnicodeDecodeError, csv.Error, KeyError) as error:
            raise ConfigError(f"{self.path}: cannot read the summary of the earlier run ({error}); move it away to "
                              "run every job again") from error

    def finished(self, job: str) -> bool:
        row = self.rows.get(job) or {}
        outputs = (row.get("output") or "").split(";")
        return not row.get("error") and all(outputs) and all((self.out / name).is_file() for name in outputs)

    def record(self, job: str, server: str, seconds: float, outputs: list[str], error: str, retried: str) -> None:
        self.rows[job] = {"job": job, "server": server, "seconds": f"{seconds:.1f}", "output": ";".join(outputs),
                          "error": error, "retried": retried}
        atomic_write(self.path, self._write)

    def _write(self, temp: str) -> None:
        with open(temp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, SUMMARY_COLUMNS, extrasaction="ignore", restval="")
            writer.writeheader()
            writer.writerows(self.rows.values())


# -- the run ----------------------------------------------------------------------------------------------------
@dataclass
class Attempt:
    job: Job
    server: str
    seconds: float = 0.0
    error: str = ""


class Batch:
    """Runs the jobs: the main thread hands them out and keeps the summary; one thread per job attempt talks to
    its server. `report` gets the progress lines (from the main thread only)."""

    def __init__(self, jobs: JobsFile, servers: list[str], out, per_server: int = 1, timeout: float | None = None,
                 max_download: int = DEFAULT_MAX_DOWNLOAD, report=print, poll: float = 1.0):
        self.jobs, self.servers, self.out, self.per_server = jobs, servers, Path(out), per_server
        self.upload_name = functools.lru_cache(CHECKED_AUDIO_KEPT)(upload_name)  # hash a file once, not per job
        self.client_options = {"timeout": timeout, "max_download": max_download}
        self.report, self.poll = report, poll
        self.in_flight = dict.fromkeys(servers, 0)
        self.finished_on = dict.fromkeys(servers, 0)
        self.down: set[str] = set()
        self.failed = 0
        self.results: queue.Queue[Attempt] = queue.Queue()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def run(self) -> int:
        """Run every job not finished before; the number that failed."""
        self.out.mkdir(parents=True, exist_ok=True)
        lock = FolderLock(self.out, "the --out folder")
        began = time.monotonic()
        try:
            shutil.rmtree(self.out / INCOMING, ignore_errors=True)  # an interrupted run's partial downloads
            self.summary = Summary(self.out)
            kept = sum(1 for name in self.jobs.names() if self.summary.finished(name))
            if kept:
                self.report(f"{kept} of {len(self.jobs)} jobs finished in an earlier run; kept")
            self._run(job for job in self.jobs if not self.summary.finished(job.name))
            counts = ", ".join(f"{server}: {count}" for server, count in self.finished_on.items())
            self.report(f"done in {time.monotonic() - began:.0f}s: {sum(self.finished_on.values())} finished, "
                        f"{self.failed} failed, {kept} kept from earlier; jobs per server: {counts}")
            return self.failed
        except KeyboardInterrupt:
            self.report(f"stopped; finished jobs are in {self.out / 'summary.csv'}: run the same command again to resume")
            raise
        finally:
            self.stop.set()
            end = time.monotonic() + 5.0  # threads stop at their next read or pause; a stalled read is left behind
            for thread in self.threads:
                thread.join(max(0.0, end - time.monotonic()))
            shutil.rmtree(self.out / INCOMING, ignore_errors=True)
            lock.release()

    def _run(self, jobs: Iterator[Job]) -> None:
        """Start jobs while servers have free slots, taking them from `jobs` only then; wait for one to end."""
        pending: list[Job] = []  # taken and not started: retries first
        while True:
            self._start_what_fits(pending)
            while self._free_slots() and (job := next(jobs, None)) is not None:
                pending.append(job)
                self._start_what_fits(pending)
            if not sum(self.in_flight.values()):
                break
            self._take(self.results.get(), pending)
        for job in itertools.chain(pending, jobs):  # every server is down
            self._fail(job, job.tried[-1] if job.tried else "", 0.0, "no server left to run it")

    def _start_what_fits(self, pending: list[Job]) -> None:
        for job in list(pending):
            candidates = self._candidates(job)
            if not candidates:
                pending.remove(job)
                self._fail(job, job.tried[-1] if job.tried else "", 0.0, "no server left to run it")
                continue
            server = self._least_busy([s for s in candidates if self.in_flight[s] < self.per_server])
            if server is not None:
                pending.remove(job)
                self._start(job, server)

    def _free_slots(self) -> int:
        return sum(self.per_server - self.in_flight[server] for server in self.servers if server not in self.down)

    def _candidates(self, job: Job) -> list[str]:
        """The servers the job may still go to: up, not tried; after one failure, one more try elsewhere."""
        if len(job.tried) > 1:
            return []
        return [server for server in self.servers if server not in self.down and server not in job.tried]

    def _least_busy(self, free: list[str]) -> str | None:
        """The free server with the fewest prompts running or waiting; one that does not answer is left out from
        now on."""
        loads = {}
        for server in free:
            try:
                loads[server] = ComfyClient(server, timeout=PROBE_SECONDS).queue_length()
            except GenerationError as error:
                self.down.add(server)
                self.report(f"{server} stopped answering ({one_line(error)}); no more jobs go there")
        return min(loads, key=loads.get, default=None)

    def _start(self, job: Job, server: str) -> None:
        self.in_flight[server] += 1
        self.report(f"job {job.name} started on {server}")
        thread = threading.Thread(target=self._attempt, args=(Attempt(job, server),), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _attempt(self, attempt: Attempt) -> None:
        """One job on one server (in its own thread): upload, queue, wait, download into the job's incoming folder."""
        began = time.monotonic()
        staging = self.out / INCOMING / attempt.job.name
        try:
            shutil.rmtree(staging, ignore_errors=True)
            client = ComfyClient(attempt.server, stop=self.stop, **self.client_options)
            uploaded = client.upload(attempt.job.audio, self.upload_name(attempt.job.audio))
            graph = attempt.job.graph_for(self.jobs.workflow, uploaded)
            history = client.wait(client.submit(graph), report=lambda line: None, poll=self.poll)
            if not client.download_outputs(history, staging):
                raise GenerationError("the server saved no files; end the workflow with a save node (e.g. Save Video)")
        except Exception as error:  # noqa: BLE001 - whatever goes wrong on one server fails this attempt, not the batch
            attempt.error = one_line(error) if isinstance(error, MTVError) else f"{type(error).__name__}: {error}"
        attempt.seconds = time.monotonic() - began
        self.results.put(attempt)

    def _take(self, attempt: Attempt, pending: list[Job]) -> None:
        job, server = attempt.job, attempt.server
        self.in_flight[server] -= 1
        if not attempt.error:
            outputs = self._publish(job)
            self.summary.record(job.name, server, attempt.seconds, outputs, "", job.first_failure)
            self.finished_on[server] += 1
            self.report(f"job {job.name} finished on {server} in {attempt.seconds:.1f}s: {', '.join(outputs)}")
            return
        shutil.rmtree(self.out / INCOMING / job.name, ignore_errors=True)
        job.tried.append(server)
        if not self._candidates(job):
            self._fail(job, server, attempt.seconds, attempt.error)
            return
        job.first_failure = f"{server}: {attempt.error}"
        self.report(f"job {job.name} failed on {server} ({attempt.error}); retrying on another server")
        pending.insert(0, job)

    def _fail(self, job: Job, server: str, seconds: float, error: str) -> None:
        self.failed += 1
        self.summary.record(job.name, server, seconds, [], error, job.first_failure)
        self.report(f"job {job.name} failed{f' on {server}' if server else ''}: {error}")

    def _publish(self, job: Job) -> list[str]:
        """Move the finished attempt's files into OUT/<job>/ (a file already there is kept; the new one gets a new
        name); their names relative to OUT."""
        staging = self.out / INCOMING / job.name
        published = []
        for file in sorted(path for path in staging.rglob("*") if path.is_file()):
            target = unique_path(self.out / job.name / file.relative_to(staging))
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, target)
            published.append(target.relative_to(self.out).as_posix())
        shutil.rmtree(staging)
        return published


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
