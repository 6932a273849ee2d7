"""Many jobs on many ComfyUI servers: each job goes to the least busy server with a free slot; a job that fails
there is retried once on another server. Outputs land in OUT/<job>/, and OUT/summary.csv is rewritten after every
job, so a stopped batch resumes: a job with outputs and no error in the summary (and its files still there) is not
run again."""

from __future__ import annotations

import functools
import itertools
import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mtv_core.errors import GenerationError, MTVError
from mtv_core.fileio import FolderLock, file_sha256

from .client import DEFAULT_MAX_DOWNLOAD, ComfyClient
from .downloads import unique_path
from .jobs_file import CHECKED_AUDIO_KEPT, Job, JobsFile
from .options import OUT
from .summary import Summary

PROBE_SECONDS = 10.0
INCOMING = ".incoming"  # OUT/.incoming/<job>/: one attempt's downloads until the job has finished


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
        lock = FolderLock(self.out, f"the {OUT} folder")
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
                with ComfyClient(server, timeout=PROBE_SECONDS) as client:
                    loads[server] = client.queue_length()
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
            with ComfyClient(attempt.server, stop=self.stop, **self.client_options) as client:
                uploaded = client.upload(attempt.job.audio, self.upload_name(attempt.job.audio))
                graph = attempt.job.graph_for(self.jobs.workflow, uploaded)
                history = client.wait(client.submit(graph), report=lambda line: None, poll=self.poll)
                if not client.download_outputs(history, staging):
                    raise GenerationError("the server saved no files; end the workflow with a save node (e.g. Save "
                                          "Video)")
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


def upload_name(audio: Path) -> str:
    """The audio's name on the server, with a piece of its hash: two jobs' different files of one name cannot
    replace each other there, and the same file keeps one name."""
    return f"{audio.stem}-{file_sha256(audio)[:12]}{audio.suffix}"

