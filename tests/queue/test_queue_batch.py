"""`python -m mtv_core queue --jobs`: a jobs file spread over stand-in ComfyUI servers on loopback that run one prompt
at a time, count what they are sent, and can be slow, fail, drop connections, vanish or name files to do harm."""

import csv
import json
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import wave
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from stand_in_http import StandInHandler

from mtv_core.cli import main
from mtv_core.errors import ConfigError, GenerationError
from mtv_queue.batch import Batch, upload_name
from mtv_queue.jobs_file import read_jobs
from mtv_queue.servers import check_servers
from mtv_queue.workflow import load_api_workflow

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "workflows" / "api" / "mtv_demo.json"
DEMO = load_api_workflow(WORKFLOW)


@dataclass
class State:
    """One stand-in server: what it was sent, and how it behaves."""

    seconds: float = 0.05  # per prompt, one prompt at a time
    fail_seeds: tuple = ()  # prompts with these seeds end in an execution error
    drop_first: bool = False  # drop the connection instead of answering the first prompt's /history
    vanish_first: bool = False  # after the first prompt's /history, drop every connection
    pack: bool = True
    models: tuple = ("demo (built-in)",)
    output: dict | None = None  # the saved-file entry /history names, instead of a well-behaved one
    video_bytes: int = 0  # send this many bytes for a video instead of its description
    prompts: list = field(default_factory=list)  # (prompt id, graph, finishes at)
    most_waiting: int = 0  # the most prompts it ever had running or waiting
    uploads: dict = field(default_factory=dict)
    gone: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seeds(self) -> list:
        return [graph["10"]["inputs"]["seed"] for _, graph, _ in self.prompts]


class StandInComfy(StandInHandler):
    @property
    def state(self) -> State:
        return self.server.state

    def drop(self):
        self.close_connection = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.state.gone:
            return self.drop()
        if self.path == "/upload/image":
            name = re.search(rb'filename="([^"]+)"', body).group(1).decode()
            self.state.uploads[name] = body
            return self._send(200, {"name": name, "subfolder": "", "type": "input"})
        with self.state.lock:
            last = self.state.prompts[-1][2] if self.state.prompts else 0.0
            prompt_id = f"p{len(self.state.prompts)}"
            self.state.prompts.append((prompt_id, json.loads(body)["prompt"], max(last, time.monotonic()) + self.state.seconds))
            waiting = sum(end > time.monotonic() for _, _, end in self.state.prompts)
            self.state.most_waiting = max(self.state.most_waiting, waiting)
        return self._send(200, {"prompt_id": prompt_id, "number": len(self.state.prompts), "node_errors": {}})

    def do_GET(self):
        url = urlparse(self.path)
        if self.state.gone:
            return self.drop()
        if url.path == "/object_info":
            return self._send(200, object_info(self.state))
        if url.path == "/queue":
            now = time.monotonic()
            waiting = [[n, prompt_id] for n, (prompt_id, _, end) in enumerate(self.state.prompts) if end > now]
            return self._send(200, {"queue_running": waiting[:1], "queue_pending": waiting[1:]})
        if url.path.startswith("/history/"):
            return self.history(url.path.removeprefix("/history/"))
        if url.path == "/view":
            query = parse_qs(url.query)
            number = int(query["filename"][0].split("_")[1])
            _, graph, _ = self.state.prompts[number]
            described = f"video {number} of {graph['5']['inputs']['audio']} seed {graph['10']['inputs']['seed']}"
            return self._send(200, b"x" * self.state.video_bytes or described.encode(), "video/mp4")
        return self._send(404, {})

    def history(self, prompt_id: str):
        number = int(prompt_id[1:])
        _, graph, end = self.state.prompts[number]
        if time.monotonic() < end:
            return self._send(200, {})
        if number == 0 and (self.state.drop_first or self.state.vanish_first):
            self.state.gone = self.state.vanish_first
            self.state.drop_first = False
            return self.drop()
        failed = graph["10"]["inputs"]["seed"] in self.state.fail_seeds
        status = {"status_str": "error" if failed else "success", "completed": not failed, "messages": [[
            "execution_error", {"node_id": "9", "node_type": "MTVApply", "exception_type": "RuntimeError",
                                "exception_message": "out of memory"}]] if failed else []}
        item = self.state.output or {"filename": f"demo_{number:05}_.mp4", "subfolder": "mtv", "type": "output"}
        return self._send(200, {prompt_id: {"status": status, "outputs": {"12": {"images": [item]}}}})


def object_info(state: State) -> dict:
    """What /object_info says about the demo workflow's node types: loader inputs as choice lists."""
    def spec(name, value):
        if name.endswith("_name"):
            return [list(state.models), {}]
        return [[value], {}] if isinstance(value, str) else ["FLOAT", {}]

    return {node["class_type"]: {"input": {"required": {name: spec(name, value) for name, value in node["inputs"].items()}}}
            for node in DEMO.values() if state.pack or not node["class_type"].startswith("MTV")}


@pytest.fixture
def serve():
    started = []

    def start(state: State) -> str:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), StandInComfy)
        httpd.daemon_threads, httpd.state = True, state
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def write_wav(path: Path, fill: int = 0) -> Path:
    """A tiny real WAV (mono, 16 kHz, 20 samples); each `fill` gives other bytes, so another upload name."""
    with wave.open(str(path), "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(16000)
        clip.writeframes(bytes([fill]) * 40)
    return path


def jobs_file(folder: Path, count: int, seeds=None, extra: str = "") -> Path:
    """`count` jobs, each with its own small audio file, prompt and seed (100, 101, ... unless given)."""
    seeds = seeds or [100 + n for n in range(count)]
    lines = ["job,audio,prompt,seed" + (",10.steps" if extra else "")]
    for n, seed in enumerate(seeds):
        write_wav(folder / f"clip{n}.wav", n)
        lines.append(f"job{n},clip{n}.wav,\"A face, take {n}\",{seed}" + (f",{extra}" if extra else ""))
    path = folder / "jobs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def summary(out: Path) -> dict:
    with open(out / "summary.csv", newline="") as handle:
        return {row["job"]: row for row in csv.DictReader(handle)}


def run_batch(jobs: Path, servers: list, out: Path, report=None, **options) -> tuple[int, list]:
    """(how many jobs failed, the progress lines)."""
    lines = []
    failed = Batch(read_jobs(jobs, DEMO), servers, out, report=report or lines.append, poll=0.02, **options).run()
    return failed, lines


def left_files(folder: Path) -> list:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_jobs_spread_over_two_servers_the_faster_taking_more(serve, tmp_path):
    slow, fast = State(seconds=1.0), State(seconds=0.02)
    servers = [serve(slow), serve(fast)]
    out = tmp_path / "out"
    failed, lines = run_batch(jobs_file(tmp_path, 6, extra="7"), servers, out)
    assert failed == 0
    rows = summary(out)
    assert sorted(rows) == [f"job{n}" for n in range(6)]
    assert all(row["error"] == "" and row["retried"] == "" for row in rows.values())
    on = {server: [job for job, row in rows.items() if row["server"] == server] for server in servers}
    assert len(on[servers[1]]) > len(on[servers[0]]) >= 1
    assert len(slow.prompts) + len(fast.prompts) == 6
    for n in range(6):
        state = slow if f"job{n}" in on[servers[0]] else fast
        (number, graph), = [(i, g) for i, (_, g, _) in enumerate(state.prompts) if g["10"]["inputs"]["seed"] == 100 + n]
        uploaded = upload_name(tmp_path / f"clip{n}.wav")
        assert graph["5"]["inputs"]["audio"] == uploaded and uploaded in state.uploads
        assert graph["8"]["inputs"]["scene"] == f"A face, take {n}" and graph["10"]["inputs"]["steps"] == 7
        assert rows[f"job{n}"]["output"] == f"job{n}/mtv/demo_{number:05}_.mp4"
        assert (out / rows[f"job{n}"]["output"]).read_text() == f"video {number} of {uploaded} seed {100 + n}"
    assert left_files(out) == sorted([rows[f"job{n}"]["output"] for n in range(6)] + ["summary.csv"])
    assert lines[-1].endswith(f"6 finished, 0 failed, 0 kept from earlier; jobs per server: "
                                        f"{servers[0]}: {len(on[servers[0]])}, {servers[1]}: {len(on[servers[1]])}")


def test_per_server_caps_the_jobs_in_flight_on_each_server(serve, tmp_path):
    state = State(seconds=0.3)
    out = tmp_path / "out"
    assert run_batch(jobs_file(tmp_path, 5), [serve(state)], out, per_server=2)[0] == 0
    assert state.most_waiting == 2 and sorted(state.seeds()) == [100, 101, 102, 103, 104]
    assert sorted(summary(out)) == [f"job{n}" for n in range(5)]


@pytest.mark.parametrize("trouble", [{"drop_first": True}, {"fail_seeds": (100,)}, {"vanish_first": True}])
def test_a_job_whose_server_fails_is_retried_on_the_other_and_the_summary_says_so(serve, tmp_path, trouble):
    flaky, steady = State(**trouble), State(seconds=0.3)
    servers = [serve(flaky), serve(steady)]
    out = tmp_path / "out"
    failed, lines = run_batch(jobs_file(tmp_path, 3), servers, out)
    assert failed == 0
    rows = summary(out)
    assert rows["job0"]["server"] == servers[1] and rows["job0"]["error"] == ""
    assert rows["job0"]["retried"].startswith(f"{servers[0]}: ")
    assert ("out of memory" if "fail_seeds" in trouble else "cannot reach") in rows["job0"]["retried"]
    assert flaky.seeds()[0] == 100 and 100 in steady.seeds()
    assert all(row["error"] == "" and (out / row["output"]).is_file() for row in rows.values())
    assert f"job job0 failed on {servers[0]}" in "\n".join(lines)
    if "vanish_first" in trouble:
        assert flaky.seeds() == [100] and sorted(steady.seeds()) == [100, 101, 102]
        assert f"{servers[0]} stopped answering" in "\n".join(lines)


def test_a_job_that_fails_on_both_servers_is_recorded_and_the_others_finish(serve, tmp_path, capsys):
    states = [State(fail_seeds=(666,)), State(fail_seeds=(666,))]
    servers = [serve(state) for state in states]
    out = tmp_path / "out"
    code = main(["queue", str(WORKFLOW), "--server", servers[0], "--server", servers[1],
                 "--jobs", str(jobs_file(tmp_path, 3, seeds=[1, 666, 2])), "--out", str(out)])
    assert code == 1
    rows = summary(out)
    failure = "the workflow failed on the server: node 9 (MTVApply): RuntimeError: out of memory"
    assert rows["job1"]["output"] == "" and rows["job1"]["error"] == failure
    assert rows["job1"]["retried"].endswith(f": {failure}")
    assert {rows["job1"]["server"], rows["job1"]["retried"].split(": ")[0]} == set(servers)
    assert all(rows[job]["error"] == "" and (out / rows[job]["output"]).is_file() for job in ("job0", "job2"))
    assert sorted(states[0].seeds() + states[1].seeds()) == [1, 2, 666, 666]
    printed = capsys.readouterr()
    assert "2 finished, 1 failed" in printed.out and "1 of 3 jobs failed" in printed.err


def test_ctrl_c_keeps_finished_jobs_and_a_rerun_does_not_redo_them(serve, tmp_path):
    states = [State(seconds=0.1), State(seconds=0.1)]
    servers = [serve(state) for state in states]
    jobs, out, finished = jobs_file(tmp_path, 6), tmp_path / "out", []

    def stop_after_two(line):
        finished.extend(re.findall(r"job (job\d) finished", line))
        if len(finished) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(jobs, servers, out, report=stop_after_two)
    rows = summary(out)
    assert sorted(rows) == sorted(finished)
    assert all(row["error"] == "" and (out / row["output"]).is_file() for row in rows.values())
    assert not (out / ".incoming").exists() and not (out / ".lock").exists()
    sent_before = [len(state.prompts) for state in states]

    failed, lines = run_batch(jobs, servers, out)
    assert failed == 0 and lines[0] == "2 of 6 jobs finished in an earlier run; kept"
    rows = summary(out)
    assert sorted(rows) == [f"job{n}" for n in range(6)]
    assert all(row["error"] == "" and (out / row["output"]).is_file() for row in rows.values())
    sent_again = [seed for state, before in zip(states, sent_before) for seed in state.seeds()[before:]]
    assert sorted(sent_again) == [100 + n for n in range(6) if f"job{n}" not in finished]


def _as_in_a_terminal():
    """Ctrl-C's default action even when the tests run in the background (which starts children with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_to_the_command_keeps_the_summary_and_the_same_command_resumes(serve, tmp_path, capsys):
    state = State(seconds=0.2)
    server = serve(state)
    out = tmp_path / "out"
    arguments = ["queue", str(WORKFLOW), "--server", server, "--jobs", str(jobs_file(tmp_path, 2)), "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "mtv_core", *arguments], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_as_in_a_terminal)  # noqa: PLW1509 - it only resets one signal
    deadline = time.monotonic() + 30
    while len(state.prompts) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stdout + stderr
    assert "stopped (SIGINT)" in stderr and "Traceback" not in stderr
    assert "run the same command again to resume" in stdout
    assert list(summary(out)) == ["job0"] and state.seeds() == [100, 101]
    assert left_files(out) == ["job0/mtv/demo_00000_.mp4", "summary.csv"]

    assert main(arguments) == 0
    assert state.seeds() == [100, 101, 101]
    assert "1 of 2 jobs finished in an earlier run; kept" in capsys.readouterr().out
    assert left_files(out) == ["job0/mtv/demo_00000_.mp4", "job1/mtv/demo_00002_.mp4", "summary.csv"]


def test_servers_without_the_pack_or_a_model_file_are_refused_by_name(serve, tmp_path, capsys):
    good, no_pack, no_model = State(), State(pack=False), State(models=("mtv_single.safetensors",))
    servers = [serve(good), serve(no_pack), serve(no_model), "http://127.0.0.1:9"]
    with pytest.raises(GenerationError) as refused:
        check_servers(servers, DEMO)
    lines = str(refused.value).splitlines()
    assert lines[0] == (f"{servers[1]} has no node MTVApply, MTVChainSegments, MTVEncodeWav2Vec, MTVLoadAudio, "
                        "MTVModelLoader, MTVStemsFromAudio, MTVTextEncode, MTVVAEAndT5Loader, MTVWav2VecLoader; "
                        "install the MTV pack (custom_nodes/comfyui-mtv) or update ComfyUI there, then restart it")
    assert lines[1] == (f"{servers[2]} has no model file 'demo (built-in)' (node 1 MTVModelLoader, input model_name), "
                        "'demo (built-in)' (node 2 MTVVAEAndT5Loader, input vae_name), 'demo (built-in)' (node 2 "
                        "MTVVAEAndT5Loader, input t5_name), 'demo (built-in)' (node 3 MTVWav2VecLoader, input "
                        "wav2vec_name); put the files in its model folders, then restart it")
    assert lines[2].startswith("cannot reach the ComfyUI server at http://127.0.0.1:9")
    assert lines[3] == "(--skip-bad-servers runs the jobs on the others)"

    out = tmp_path / "out"
    args = ["queue", str(WORKFLOW), *[f"--server={s}" for s in servers[:3]], "--jobs", str(jobs_file(tmp_path, 2)), "--out", str(out)]
    assert main(args) == 1
    assert f"error: {servers[1]} has no node MTVApply" in capsys.readouterr().err
    assert not out.exists() and good.prompts == no_pack.prompts == no_model.prompts == [] and good.uploads == {}

    assert main([*args, "--skip-bad-servers"]) == 0
    assert f"skipping a server: {servers[2]} has no model file" in capsys.readouterr().out
    assert good.seeds() == [100, 101] and no_pack.prompts == no_model.prompts == []


@pytest.mark.parametrize("text, message", [
    ("prompt,seed\nA cat,1\n", "line 1: no 'audio' column"),
    ("audio,colour\na.wav,red\n", "line 1: unknown column 'colour'"),
    ("audio,prompt\nmissing.wav,x\n", "line 2, column 'audio': no file 'missing.wav'"),
    ("audio,prompt\n,x\n", "line 2, column 'audio': empty"),
    ("audio,10.sead\na.wav,3\n", "line 1, column '10.sead': node 10 (MTVChainSegments) has no input 'sead'; it has"),
    ("audio,KSampler.seed\na.wav,3\n", "line 1, column 'KSampler.seed': no node called 'KSampler'; use the node id"),
    ("audio,seed\na.wav,1\na.wav,seven\n", "line 3, column 'seed': 'seven' is not a whole number"),
    ("job,audio\nx,a.wav\n\nX,a.wav\n", "line 4, column 'job': the name 'X' is also on line 2"),
    ("job,audio\n../up,a.wav\n", "line 2, column 'job': '../up' cannot name a folder"),
    ("audio,prompt\na.wav,one,two\n", "line 2: 3 cells under a header of 2 columns"),
    ("audio,prompt\n", "has a header but no jobs"),
])
def test_bad_jobs_files_are_refused_with_line_column_and_value(tmp_path, text, message):
    write_wav(tmp_path / "a.wav")
    (tmp_path / "jobs.csv").write_text(text)
    with pytest.raises(ConfigError) as refused:
        read_jobs(tmp_path / "jobs.csv", DEMO)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_bad_jobs_file_queues_nothing(serve, tmp_path, capsys):
    state = State()
    jobs = jobs_file(tmp_path, 3)
    jobs.write_text(jobs.read_text().replace("clip2.wav", "clip9.wav"))
    code = main(["queue", str(WORKFLOW), "--server", serve(state), "--jobs", str(jobs), "--out", str(tmp_path / "out")])
    assert code == 1
    assert f"{jobs} line 4, column 'audio': no file 'clip9.wav'" in capsys.readouterr().err
    assert state.prompts == [] and state.uploads == {} and not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, message", [
    ('audio,prompt\na.wav,fine\na.wav,"never closed\na.wav,x\na.wav,y\n',
     "line 3: a quote opened on this line never closes (the file ends first); close it"),
    ('audio,prompt\na.wav,"two\nlines"\na.wav,x\n', "line 2: a quoted cell runs over several lines (to line 3)"),
    ('audio,prompt\na.wav,"open\na.wav,"x"\n', "line 2: a quoted cell runs over several lines (to line 3: "),
    ('audio,prompt\na.wav,"a"b\n', "line 2: not valid CSV (',' expected after '\"')"),
    ('audio,prompt\na.wav,x\na.wav,caf\xe9\n', "line 3: not UTF-8 text"),
])
def test_malformed_csv_is_refused_with_the_line_it_starts_on(tmp_path, text, message):
    write_wav(tmp_path / "a.wav")
    (tmp_path / "jobs.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError) as refused:
        read_jobs(tmp_path / "jobs.csv", DEMO)
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("header, first, second, node", [
    ("audio,seed,10.seed", "seed", "10.seed", "node 10 (MTVChainSegments) input 'seed'"),
    ("audio,8.scene,prompt", "8.scene", "prompt", "node 8 (MTVTextEncode) input 'scene'"),
    ("audio,5.audio", "audio", "5.audio", "node 5 (MTVLoadAudio) input 'audio'"),
    ("audio,10.steps,MTVChainSegments.steps", "10.steps", "MTVChainSegments.steps", "node 10 (MTVChainSegments) input 'steps'"),
])
def test_two_columns_that_set_one_input_are_refused_on_line_1(tmp_path, header, first, second, node):
    write_wav(tmp_path / "a.wav")
    (tmp_path / "jobs.csv").write_text(f"{header}\na.wav{',1' * header.count(',')}\n")
    with pytest.raises(ConfigError) as refused:
        read_jobs(tmp_path / "jobs.csv", DEMO)
    assert f"line 1: the columns {first!r} and {second!r} both set {node}; keep one of them" in str(refused.value)


@pytest.fixture
def outside(tmp_path):
    """A jobs folder, and a real WAV beside it (outside it)."""
    folder = tmp_path / "jobs"
    folder.mkdir()
    return folder, write_wav(tmp_path / "x.wav")


@pytest.mark.parametrize("cell", ["../x.wav", "ABSOLUTE", "link.wav"])
def test_audio_outside_the_jobs_folder_is_refused_unless_allowed(outside, cell):
    folder, wav = outside
    (folder / "link.wav").symlink_to(wav)
    cell = str(wav) if cell == "ABSOLUTE" else cell
    (folder / "jobs.csv").write_text(f"audio,seed\n{cell},1\n")
    with pytest.raises(ConfigError) as refused:
        read_jobs(folder / "jobs.csv", DEMO)
    assert (f"line 2, column 'audio': {cell!r} is outside the jobs file's folder {folder.resolve()} (it is "
            f"{wav.resolve()}); move the file into that folder, or pass --allow-outside") in str(refused.value)
    job, = read_jobs(folder / "jobs.csv", DEMO, allow_outside=True)
    assert job.audio == folder / cell and job.overrides == {("10", "seed"): 1}


@pytest.mark.parametrize("cell, content, message", [
    ("/etc/passwd", None, "'/etc/passwd' is not named as audio or video; give a .wav, .flac"),
    ("notes.txt", "REAL_WAV", "'notes.txt' is not named as audio or video"),
    ("fake.wav", b"root:x:0:0:root:/root:/bin/bash\n", "'fake.wav' is not an audio or video file FFmpeg can read ("),
    ("empty.wav", b"", "'empty.wav' is not an audio or video file FFmpeg can read ("),
])
def test_audio_that_is_not_sound_is_refused_even_when_outside_is_allowed(tmp_path, cell, content, message):
    if content == "REAL_WAV":
        write_wav(tmp_path / cell)
    elif content is not None:
        (tmp_path / cell).write_bytes(content)
    (tmp_path / "jobs.csv").write_text(f"audio\n{cell}\n")
    with pytest.raises(ConfigError) as refused:
        read_jobs(tmp_path / "jobs.csv", DEMO, allow_outside=True)
    assert f"line 2, column 'audio': {message}" in str(refused.value)


def test_allow_outside_reaches_the_batch_from_the_command_line(serve, outside, capsys):
    folder, wav = outside
    (folder / "jobs.csv").write_text("audio,seed\n../x.wav,5\n")
    state = State()
    arguments = ["queue", str(WORKFLOW), "--server", serve(state), "--jobs", str(folder / "jobs.csv"),
                 "--out", str(folder / "out")]
    assert main(arguments) == 1
    assert "pass --allow-outside" in capsys.readouterr().err and state.uploads == {}
    assert main([*arguments, "--allow-outside"]) == 0
    assert state.seeds() == [5] and list(state.uploads) == [upload_name(folder / "../x.wav")]


def _peak_traced_bytes(path: Path) -> int:
    """Peak memory Python allocated while checking the jobs file and walking its jobs as a batch does."""
    tracemalloc.start()
    try:
        assert sum(1 for _ in read_jobs(path, DEMO)) > 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_jobs_files_length(tmp_path):
    paths = {}
    for rows in (2_000, 20_000):
        folder = tmp_path / str(rows)
        folder.mkdir()
        write_wav(folder / "clip.wav")
        lines = (f'take{n},clip.wav,"A face talks, take {n}",{n},{n % 50 + 1}\n' for n in range(rows))
        (folder / "jobs.csv").write_text("job,audio,prompt,seed,10.steps\n" + "".join(lines))
        paths[rows] = folder / "jobs.csv"
    read_jobs(paths[2_000], DEMO)  # the imports it needs, before counting
    sizes = {rows: _peak_traced_bytes(path) for rows, path in paths.items()}
    # Only the job names are kept (to refuse a name used twice): about 190 bytes a line with the set's table.
    # A copy of the workflow for each line, as before, was about 10 kB a line.
    assert (sizes[20_000] - sizes[2_000]) / 18_000 < 400, sizes
    assert sizes[20_000] < 8 * 2**20, sizes


def test_a_jobs_file_changed_after_its_check_is_refused_and_nothing_more_is_queued(serve, tmp_path):
    state = State()
    path = jobs_file(tmp_path, 3)
    jobs = read_jobs(path, DEMO)
    path.write_text(path.read_text() + "job9,clip0.wav,x,9\n")
    with pytest.raises(ConfigError, match="changed after it was checked; run the command again"):
        Batch(jobs, [serve(state)], tmp_path / "out", report=lambda line: None, poll=0.02).run()
    assert state.prompts == [] and state.uploads == {}


def test_a_job_holds_its_inputs_and_its_graph_is_built_when_sent(tmp_path):
    job, = read_jobs(jobs_file(tmp_path, 1, extra="7"), DEMO)
    assert (job.name, job.line, job.audio) == ("job0", 2, tmp_path / "clip0.wav")
    assert job.overrides == {("8", "scene"): "A face, take 0", ("10", "seed"): 100, ("10", "steps"): 7}
    graph = job.graph_for(DEMO, "clip0-abc.wav")
    assert graph["5"]["inputs"]["audio"] == "clip0-abc.wav" and graph["10"]["inputs"]["steps"] == 7
    assert DEMO == load_api_workflow(WORKFLOW)  # the workflow itself is left as it was


@pytest.mark.parametrize("hostile, words", [
    ({"output": {"filename": "../evil.mp4", "subfolder": "", "type": "output"}}, "refused"),
    ({"output": {"filename": "demo.mp4", "subfolder": "../../up", "type": "output"}}, "subfolder"),
    ({"video_bytes": 3 * 2**20}, "more than the 1048576"),
])
def test_hostile_replies_cannot_escape_the_out_folder(serve, tmp_path, hostile, words):
    out = tmp_path / "out"
    assert run_batch(jobs_file(tmp_path, 2), [serve(State(**hostile))], out, max_download=2**20)[0] == 2
    rows = summary(out)
    assert all(row["output"] == "" and words in row["error"] for row in rows.values())
    assert left_files(tmp_path) == ["clip0.wav", "clip1.wav", "jobs.csv", "out/summary.csv"]


@pytest.mark.parametrize("options, message", [
    (["--per-server", "2"], "--per-server and --skip-bad-servers are for a batch; add --jobs FILE"),
    (["--skip-bad-servers"], "--per-server and --skip-bad-servers are for a batch; add --jobs FILE"),
    (["--server", "http://127.0.0.1:9", "--server", "http://127.0.0.1:10"], "2 --server given for one job; pass --jobs FILE"),
    (["--jobs", "jobs.csv", "--per-server", "0"], "--per-server 0 must be 1 or more"),
    (["--jobs", "jobs.csv", "--upload", "a.wav"], "--upload is for one job"),
    (["--allow-outside"], "--allow-outside is for the audio files of a jobs file; add --jobs FILE"),
])
def test_batch_options_out_of_place_are_refused(tmp_path, capsys, options, message):
    assert main(["queue", str(WORKFLOW), "--out", str(tmp_path / "out"), *options]) == 1
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()
