"""Many jobs on many ComfyUI servers.

A jobs file (CSV, one job a line) is read and checked whole, and every server is checked for the nodes and model
files the workflow names, before anything is queued. Each job then goes to the least busy server with a free slot;
a job that fails there is retried once on another server. Outputs land in OUT/<job>/, and OUT/summary.csv is
rewritten after every job, so a stopped batch resumes: a job with outputs and no error in the summary (and its files
still there) is not run again.
"""

from __future__ import annotations

import copy
import csv
import functools
import os
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, GenerationError, MTVError
from ..fileio import FolderLock, atomic_write, file_sha256
from .client import DEFAULT_MAX_DOWNLOAD, ComfyClient, unique_path
from .workflow import apply_override

NAMED_COLUMNS = ("job", "audio", "prompt", "seed")
SUMMARY_COLUMNS = ("job", "server", "seconds", "output", "error", "retried")
AUDIO_LOADERS = ("MTVLoadAudio", "LoadAudio")
PROMPT_INPUTS = {"MTVTextEncode": "scene"}
CHECK_SECONDS = 30.0
PROBE_SECONDS = 10.0
INCOMING = ".incoming"  # OUT/.incoming/<job>/: one attempt's downloads until the job has finished
_JOB_NAME = re.compile(r"\w[\w.\- ]{0,99}")


@dataclass
class Job:
    name: str
    audio: Path
    graph: dict  # the workflow with this job's prompt, seed and overrides; the audio input is set once uploaded
    audio_input: tuple[str, str]  # (node id, input name)
    tried: list[str] = field(default_factory=list)
    first_failure: str = ""

    def graph_with_audio(self, uploaded_name: str) -> dict:
        graph = copy.deepcopy(self.graph)
        node_id, input_name = self.audio_input
        graph[node_id]["inputs"][input_name] = uploaded_name
        return graph


# -- the jobs file ----------------------------------------------------------------------------------------------
def read_jobs(path, graph: dict, declared_inputs=None) -> list[Job]:
    """Every job of the CSV at `path`, each checked; the first problem is a ConfigError naming its line and column.
    Audio paths are relative to the jobs file's folder; an empty cell keeps the workflow's value."""
    path = Path(path)
    records = _records(path)
    if not records:
        raise ConfigError(f"--jobs {str(path)!r} is empty; write a header line (audio,prompt,seed) and one job a line")
    header = [name.strip() for name in records[0][1]]
    targets = _column_targets(header, graph, path)
    if declared_inputs is not None:
        declared_inputs = functools.cache(declared_inputs)
    jobs, lines_of = [], {}
    for line, row in records[1:]:
        if len(row) > len(header):
            raise ConfigError(f"{path} line {line}: {len(row)} cells under a header of {len(header)} columns; quote "
                              "cells that hold commas (\"a, b\")")
        job = _job(path, line, dict(zip(header, row)), graph, targets, declared_inputs)
        if job.name.casefold() in lines_of:
            raise ConfigError(f"{path} line {line}, column 'job': the name {job.name!r} is also on line "
                              f"{lines_of[job.name.casefold()]}; give every job its own name (it names its folder)")
        lines_of[job.name.casefold()] = line
        jobs.append(job)
    if not jobs:
        raise ConfigError(f"--jobs {str(path)!r} has a header but no jobs; add one job a line")
    return jobs


def _records(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every line that is not blank."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            return [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"--jobs {str(path)!r}: cannot read it as CSV ({error}); give a UTF-8 CSV file") from error


def _column_targets(header: list[str], graph: dict, path: Path) -> dict:
    """The (node id, input) the audio, prompt and seed columns set, after checking every column name."""
    where = f"{path} line 1"
    for column in header:
        if header.count(column) > 1:
            raise ConfigError(f"{where}: the column {column!r} appears twice; keep one")
        if column not in NAMED_COLUMNS and "." not in column:
            raise ConfigError(f"{where}: unknown column {column!r}; columns are job, audio, prompt, seed and "
                              "NODE.INPUT overrides such as 10.steps or MTVChainSegments.steps")
    if "audio" not in header:
        raise ConfigError(f"{where}: no 'audio' column; add one with each job's audio file")
    finders = {"audio": _audio_input, "prompt": _prompt_input, "seed": _seed_input}
    return {column: finders[column](graph, where) for column in finders if column in header}


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


def _job(path: Path, line: int, cells: dict, graph: dict, targets: dict, declared_inputs) -> Job:
    where = f"{path} line {line}"
    name = _job_name((cells.get("job") or "").strip() or str(line), where)
    audio = _audio_file(path, (cells.get("audio") or "").strip(), where)
    job_graph = copy.deepcopy(graph)
    for column, cell in cells.items():
        if column in ("job", "audio") or not cell.strip():
            continue
        if column in targets:
            node_id, input_name = targets[column]
            job_graph[node_id]["inputs"][input_name] = _seed(cell, where) if column == "seed" else cell
            continue
        assignment = f"{column}={cell}"
        try:
            apply_override(job_graph, assignment, declared_inputs)
        except ConfigError as error:
            raise ConfigError(f"{where}, column {column!r}: {str(error).removeprefix(f'--set {assignment!r}: ')}") from None
    return Job(name, audio, job_graph, targets["audio"])


def _job_name(name: str, where: str) -> str:
    if not _JOB_NAME.fullmatch(name) or name.casefold() == "summary.csv":
        raise ConfigError(f"{where}, column 'job': {name[:80]!r} cannot name a folder in --out; use letters, digits, "
                          "'-', '_', '.' or spaces, at most 100, not starting with '.'")
    return name


def _audio_file(path: Path, cell: str, where: str) -> Path:
    if not cell:
        raise ConfigError(f"{where}, column 'audio': empty; give the job's audio file")
    audio = path.parent / cell
    if not audio.is_file():
        raise ConfigError(f"{where}, column 'audio': no file {cell!r} (looked for {audio}); give a path relative to "
                          "the jobs file's folder, or an absolute one")
    return audio


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

    def __init__(self, jobs: list[Job], servers: list[str], out, per_server: int = 1, timeout: float | None = None,
                 max_download: int = DEFAULT_MAX_DOWNLOAD, report=print, poll: float = 1.0):
        self.jobs, self.servers, self.out, self.per_server = jobs, servers, Path(out), per_server
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
            pending = [job for job in self.jobs if not self.summary.finished(job.name)]
            kept = len(self.jobs) - len(pending)
            if kept:
                self.report(f"{kept} of {len(self.jobs)} jobs finished in an earlier run; kept")
            self._run(pending)
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

    def _run(self, pending: list[Job]) -> None:
        while pending or sum(self.in_flight.values()):
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
            if sum(self.in_flight.values()):
                self._take(self.results.get(), pending)

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
            graph = attempt.job.graph_with_audio(client.upload(attempt.job.audio, upload_name(attempt.job.audio)))
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
