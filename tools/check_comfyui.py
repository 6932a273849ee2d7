"""The real-browser check: a real ComfyUI with this pack, opened in headless Chromium as a user opens it.

    python tools/check_comfyui.py --comfyui PATH [--front-end-root PATH] [--screenshots DIR]

Starts the ComfyUI checkout at PATH on 127.0.0.1 with its own --base-directory (a temporary folder holding only
this pack, so no other install is touched) and --preview-method auto, then:
- checks the example inputs the pack installs (the demo's and the official workflows') are in the server's input
  folder, as shipped, and served by /view;
- in Chromium driven by playwright: builds every node of the pack and fails on a node that cannot be built or a
  widget named UNKNOWN;
- loads every UI workflow and fails on any page error (a 404 included), any node not built, any widget value that
  differs from the workflow's API-format file, and an audio player that cannot fetch its file; screenshots each
  workflow at the view it opens with;
- checks the template browser's list (the demo first), a thumbnail per workflow, and that no card cuts its title;
- queues the demo workflow from the UI and waits for its mp4 in /history; counts the preview images the page
  received while it sampled (binary websocket messages; none is a failure) and checks the progress bar moved while
  it decoded (updates with another maximum than sampling's, the one most updates report, once sampling began);
- POSTs /free (unload_models, free_memory) and checks ComfyUI unloaded the pack's models: every model class its
  model management loaded for the demo ("Requested to load X" in the log) is moved off by the pack's unload
  ("[MTV] ComfyUI moved X to ...") within 30 s;
- queues the Start image keyframe workflow with the demo's models (its API file, loaders switched to the built-in
  demo, its example soundtrack and keyframe) and checks its mp4 has a sound stream as long as the picture;
- queues the demo again and presses Cancel (POST /interrupt) during sampling, and measures how long the stop takes;
- with --lora FILE (an MTV LoRA for the demo model): renders the demo twice (a repeat must give the same video),
  then with an MTV LoRA Loader at strength 1 and 0: the first must change the video, the second must not.

ComfyUI's Python (--python, default: this one) needs the pack's dependencies; this script's Python needs
playwright (`pip install playwright`). The browser is Debian's chromium (`--chromium`), not playwright's download.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
# input subfolder ("": the input folder) -> the shipped files the pack copies there (comfy_adapter.install_example_inputs)
SHIPPED_INPUTS = {"mtv-demo": ROOT / "mtv_core" / "demo" / "example", "": WORKFLOWS / "inputs"}
INPUT_SUFFIXES = {".wav", ".mp4", ".png"}
PACK = "comfyui-mtv"
DEMO = "mtv_demo"
START_IMAGE = "mtv_start_image_keyframe"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


class Failures(list):
    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.append(what)
            print(f"  FAIL {what}", flush=True)
        return ok


# -- the server -------------------------------------------------------------------------------------------------
class ComfyServer:
    def __init__(self, comfyui: Path, python: str, base: Path, front_end_root: str | None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        (base / "custom_nodes" / PACK).symlink_to(ROOT, target_is_directory=True)
        command = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port), "--base-directory",
                   str(base), "--disable-auto-launch", "--preview-method", "auto"]
        if "--database-url" in (comfyui / "comfy" / "cli_args.py").read_text():
            command += ["--database-url", "sqlite:///:memory:"]  # the default database lives in the checkout
        if front_end_root:
            command += ["--front-end-root", front_end_root]
        self.log = base / "comfyui.log"
        self.input = base / "input"
        self.process = subprocess.Popen(command, cwd=comfyui, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"ComfyUI exited with {self.process.returncode}; see {self.log}")
            try:
                self.get("/object_info/MTVLoadAudio")
                return
            except (OSError, urllib.error.URLError):
                time.sleep(1)
        raise SystemExit(f"ComfyUI did not answer within {timeout:.0f}s; see {self.log}")

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            body = response.read()
            return json.loads(body) if response.headers.get_content_type() == "application/json" else body

    def post(self, path: str, payload: dict | None = None) -> None:
        data = json.dumps(payload or {}).encode()
        urllib.request.urlopen(urllib.request.Request(self.url + path, data, {"Content-Type": "application/json"}), timeout=30).close()

    def log_since(self, offset: int) -> str:
        return self.log.read_bytes()[offset:].decode(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the page ---------------------------------------------------------------------------------------------------
PAGE_HELPERS = """
window.mtvCheck = {
  progress: [], done: [],
  widgetsOf(node) { return (node.widgets || []).map(w => ({name: w.name, type: String(w.type)})); },
  build(types) {
    const out = {};
    for (const t of types) {
      const n = LiteGraph.createNode(t);
      out[t] = n ? {errors: !!n.has_errors, widgets: this.widgetsOf(n)} : null;
    }
    return out;
  },
  async load(workflow, name) {
    await app.loadGraphData(workflow, true, true, name);
    await new Promise(r => setTimeout(r, 1500));
    const nodes = app.graph._nodes.map(n => ({id: n.id, type: n.type, comfyClass: n.comfyClass || null,
      errors: !!n.has_errors, widgets: this.widgetsOf(n),
      player: ((n.widgets || []).find(w => w.name === 'audioUI') || {}).element?.src || null}));
    const prompt = await app.graphToPrompt();
    return {nodes, output: prompt.output, scale: app.canvas.ds.scale};
  },
  async status(url) { try { return (await fetch(url)).status; } catch (e) { return String(e); } },
};
api.addEventListener('progress', e => window.mtvCheck.progress.push([Date.now(), e.detail.value, e.detail.max, e.detail.prompt_id, e.detail.node]));
for (const kind of ['execution_success', 'execution_error', 'execution_interrupted'])
  api.addEventListener(kind, e => window.mtvCheck.done.push([Date.now(), kind, e.detail]));
"""


PREVIEW_EVENTS = {1, 2, 4}  # ComfyUI's binary websocket events: PREVIEW_IMAGE, UNENCODED_PREVIEW_IMAGE, ..._WITH_METADATA


class Page:
    def __init__(self, browser, url: str, failures: Failures):
        self.page = browser.new_page(viewport={"width": 1920, "height": 1080})
        self.errors: list[str] = []
        # Each websocket message's kind: "text", or a binary message's event type. Playwright hands them over only
        # while this script calls it, so they are counted, not timed.
        self.frames: list[str | int] = []
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("response", lambda r: self.errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
        self.page.on("websocket", lambda socket: socket.on("framereceived", self._frame))
        self.page.goto(url)
        self.page.wait_for_function("window.app && window.app.graph && window.LiteGraph && window.app.canvas", timeout=120000)
        self.page.wait_for_timeout(3000)
        self.page.evaluate("() => { window.api = window.app.api || window.comfyAPI?.api?.api; }")
        self.page.evaluate(PAGE_HELPERS)
        self.version = self.page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__ || 'unknown'")
        startup, self.errors[:] = list(self.errors), []
        for error in startup:  # errors of the frontend itself at startup are reported, not failed, unless they are ours
            ours = "MTV" in error or PACK in error or "mtv-demo" in error
            failures.check(not ours, f"at startup: {error}") if ours else print(f"  note: frontend at startup: {error[:160]}")

    def _frame(self, payload) -> None:
        self.frames.append("text" if isinstance(payload, str) else int.from_bytes(payload[:4], "big"))

    def screenshot_templates(self, path: Path, titles: list[str]) -> dict:
        """The template browser on the pack's page (a new user sees it open at the first start), then closed.
        Returns how each title shows on its card (see CUT_TITLES); empty if the page did not open."""
        if not self.page.get_by_text(PACK, exact=True).count():
            self.page.evaluate("() => app.extensionManager?.command?.execute('Comfy.BrowseTemplates')")
            self.page.wait_for_timeout(2000)
        cut = {}
        if self.page.get_by_text(PACK, exact=True).count():
            self.page.get_by_text(PACK, exact=True).first.click()
            self.page.wait_for_timeout(2500)
            self.page.screenshot(path=str(path))
            cut = self.evaluate(CUT_TITLES, titles)
        self.page.keyboard.press("Escape")
        self.page.wait_for_timeout(500)
        return cut

    def take_errors(self) -> list[str]:
        errors, self.errors[:] = list(self.errors), []
        return errors

    def evaluate(self, script: str, argument=None):
        return self.page.evaluate(script, argument)


# For each title: "missing" (no element shows it), "cut" (an element showing it is narrower or lower than its text:
# truncated or line-clamped) or "whole".
CUT_TITLES = """titles => Object.fromEntries(titles.map(title => {
  const shown = [...document.querySelectorAll('h3, h4, p, span, div')].filter(
    e => e.children.length === 0 && e.textContent.trim() === title && e.offsetParent !== null);
  const cut = shown.some(e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1);
  return [title, shown.length === 0 ? 'missing' : cut ? 'cut' : 'whole'];
}))"""


# -- the checks -------------------------------------------------------------------------------------------------
def check_server(server: ComfyServer, failures: Failures, titles: list[str]) -> list[str]:
    info = server.get("/object_info")
    ours = sorted(name for name, node in info.items() if node.get("python_module", "").endswith(PACK))
    failures.check(len(ours) >= 14, f"the pack registered {len(ours)} nodes: {ours}")
    listed = server.get("/workflow_templates").get(PACK, [])
    failures.check(sorted(listed) == sorted(titles), f"template browser lists {listed}, expected {titles}")
    failures.check(bool(listed) and listed[0] == titles[0], f"template browser does not list the demo first: {listed[:1]}")
    for title in titles:
        try:
            image = server.get(f"/api/workflow_templates/{PACK}/{urllib.parse.quote(title)}.jpg")
            failures.check(image[:3] == b"\xff\xd8\xff", f"thumbnail of {title!r} is not a JPEG")
        except urllib.error.HTTPError as error:
            failures.check(False, f"thumbnail of {title!r}: HTTP {error.code}")
    return ours


def check_example_inputs(server: ComfyServer, failures: Failures) -> None:
    """The example inputs the pack installs are in the server's input folder, as shipped, and served by /view."""
    shipped = [(folder, path) for folder, source in SHIPPED_INPUTS.items() for path in sorted(source.iterdir())
               if path.suffix in INPUT_SUFFIXES]
    for folder, path in shipped:
        installed = server.input / folder / path.name
        failures.check(installed.is_file() and installed.read_bytes() == path.read_bytes(),
                       f"example input {path.name} is not in the server's input folder as shipped ({installed})")
        query = urllib.parse.urlencode({"filename": path.name, "subfolder": folder, "type": "input"})
        try:
            served = server.get(f"/view?{query}") == path.read_bytes()
        except urllib.error.HTTPError as error:
            served = f"HTTP {error.code}"
        failures.check(served is True, f"/view?{query} does not serve the shipped {path.name}: {served}")
    print(f"  example inputs: {len(shipped)} files in the input folder and served by /view")


BAD_INPUTS = [  # (node, input, value): each must be refused before the run, once, on that input
    ("5", "audio", "no_such_file.wav"), ("5", "audio", "../../etc/passwd"), ("5", "duration_seconds", -1.0),
    ("5", "start_seconds", -3.0), ("1", "model_name", "../mtv_single.safetensors"), ("10", "steps", 0),
]


def check_validation(server: ComfyServer, demo: dict, failures: Failures) -> None:
    """Bad values in the demo's API graph are refused by POST /prompt with one error, on the right input."""
    for node_id, name, value in BAD_INPUTS:
        graph = json.loads(json.dumps(demo))
        graph[node_id]["inputs"][name] = value
        try:
            server.post("/prompt", {"prompt": graph})
            failures.check(False, f"{node_id}.{name}={value!r} was accepted")
            continue
        except urllib.error.HTTPError as error:
            answer = json.loads(error.read() or b"{}")
        errors = [(node, item.get("extra_info", {}).get("input_name"), item.get("details", ""))
                  for node, entry in (answer.get("node_errors") or {}).items() for item in entry.get("errors", [])]
        failures.check([(n, i) for n, i, _ in errors] == [(node_id, name)],
                       f"{node_id}.{name}={value!r}: expected one error on that input, got {errors}")
        print(f"  refused {node_id}.{name}={value!r}: {errors[0][2][:140] if errors else '?'}")


def check_nodes(page: Page, types: list[str], failures: Failures) -> None:
    built = page.evaluate("types => window.mtvCheck.build(types)", types)
    for node_type, result in built.items():
        if failures.check(result is not None and not result["errors"], f"node {node_type} cannot be built"):
            unknown = [w["name"] for w in result["widgets"] if "UNKNOWN" in (w["name"], w["type"].upper())]
            failures.check(not unknown, f"node {node_type} has UNKNOWN widgets {unknown}")
    for error in page.take_errors():
        failures.check(False, f"building nodes: {error}")


def check_upload(page: Page, server: ComfyServer, folder: Path, failures: Failures) -> None:
    """Load Audio's upload button: choose a wav as a user does; the widget takes its name and the player plays it."""
    import math
    import struct
    import wave

    path = folder / "mtv_upload_check.wav"
    with wave.open(str(path), "wb") as sound:
        sound.setnchannels(1), sound.setsampwidth(2), sound.setframerate(16000)
        sound.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 8))) for i in range(16000)))
    page.evaluate("""() => { const n = LiteGraph.createNode('MTVLoadAudio'); app.graph.add(n); window.mtvCheck.uploadNode = n; }""")
    with page.page.expect_file_chooser(timeout=10000) as chooser:
        page.evaluate("() => window.mtvCheck.uploadNode.widgets.find(w => w.name === 'upload').callback()")
    chooser.value.set_files(str(path))
    page.page.wait_for_timeout(3000)
    value, player = page.evaluate("""() => { const n = window.mtvCheck.uploadNode;
        return [n.widgets.find(w => w.name === 'audio').value, n.widgets.find(w => w.name === 'audioUI').element.src]; }""")
    status = page.evaluate("url => window.mtvCheck.status(url)", player) if player else None
    failures.check(value == path.name and status == 200, f"upload button: widget {value!r}, player {player!r} ({status})")
    print(f"  upload button: {value} uploaded, player HTTP {status}")
    page.evaluate("() => app.graph.remove(window.mtvCheck.uploadNode)")
    page.take_errors()


def check_workflow(page: Page, server: ComfyServer, title: str, api: dict, shots: Path, label: str, failures: Failures) -> bool:
    ui = json.loads((WORKFLOWS / f"{title}.json").read_text())
    loaded = page.evaluate("([w, n]) => window.mtvCheck.load(w, n)", [ui, title])
    before = len(failures)
    failures.check(len(loaded["nodes"]) == len(ui["nodes"]), f"{title}: {len(loaded['nodes'])} of {len(ui['nodes'])} nodes built")
    flagged = [f"{node['id']} ({node['type']})" for node in loaded["nodes"] if node["errors"]]
    if flagged:  # newer frontends flag a widget naming a model or media file this install does not have
        failures.check("Demo" not in title, f"{title}: the frontend flags nodes {flagged}")
        print(f"  note: {title}: the frontend flags nodes {', '.join(flagged)} (files a fresh install lacks)")
    for node in loaded["nodes"]:
        failures.check(bool(node["comfyClass"]) or node["type"] == "Note", f"{title}: node {node['id']} ({node['type']}) not built")
        unknown = [w["name"] for w in node["widgets"] if w["name"] == "UNKNOWN"]
        failures.check(not unknown, f"{title}: node {node['id']} ({node['type']}) has UNKNOWN widgets")
        if node["player"]:
            status = page.evaluate("url => window.mtvCheck.status(url)", node["player"])
            failures.check(status == 200, f"{title}: node {node['id']}'s player cannot fetch {node['player']} ({status})")
    failures.check(loaded["scale"] >= 0.6, f"{title}: opens at {loaded['scale']:.0%} zoom, where the canvas draws no text")
    compare_prompt(title, loaded["output"], api, failures)
    page.page.screenshot(path=str(shots / f"{title} [{label}].png"))
    for error in page.take_errors():  # a 404 included: every input file a workflow names is installed
        failures.check(False, f"{title}: {error}")
    return len(failures) == before


def compare_prompt(title: str, output: dict, api: dict, failures: Failures) -> None:
    failures.check(set(output) == set(api), f"{title}: the browser's prompt has nodes {sorted(output)}, the API file {sorted(api)}")
    for node_id, node in api.items():
        got = output.get(node_id, {})
        failures.check(got.get("class_type") == node["class_type"], f"{title}: node {node_id} is {got.get('class_type')}, API file {node['class_type']}")
        for name, value in node["inputs"].items():
            seen = got.get("inputs", {}).get(name)
            failures.check(seen == value, f"{title}: node {node_id} input {name} is {seen!r} in the browser, {value!r} in the API file")


class DemoRun(NamedTuple):
    seconds: float
    prompt_id: str


def queue_demo(page: Page, server: ComfyServer, title: str, failures: Failures, timeout: float) -> DemoRun | None:
    """Queue the demo from the UI (as the Queue button does) and wait for its mp4."""
    ui = json.loads((WORKFLOWS / f"{title}.json").read_text())
    page.evaluate("([w, n]) => window.mtvCheck.load(w, n)", [ui, title])
    known = set(server.get("/history"))
    started = time.monotonic()
    page.evaluate("() => app.queuePrompt(0, 1)")  # 1.27 returns false even on success: /history decides
    while time.monotonic() - started < timeout:
        new = {k: v for k, v in server.get("/history").items() if k not in known}
        for prompt_id, entry in new.items():
            if entry.get("status", {}).get("completed") is not None:
                files = [item.get("filename", "") for item in output_items(entry)]
                videos = [item for item in output_items(entry) if item.get("filename", "").endswith(".mp4")]
                ok = entry["status"].get("status_str") == "success" and bool(videos) and is_mp4(server, videos[0])
                failures.check(ok, f"demo queued from the UI: {entry['status'].get('status_str')}, outputs {files}, "
                                   f"messages {json.dumps(entry['status'].get('messages'))[:600]}")
                return DemoRun(time.monotonic() - started, prompt_id) if ok else None
        time.sleep(1)
    failures.check(False, f"demo queued from the UI: no result in /history after {timeout:.0f}s")
    return None


def output_items(entry: dict) -> list[dict]:
    """The files a /history entry's outputs name (SaveVideo lists its mp4 under 'images' in some versions)."""
    return [item for output in entry.get("outputs", {}).values() for kind in ("videos", "images", "gifs")
            for item in output.get(kind, []) or []]


def check_previews(page: Page, failures: Failures) -> None:
    """The preview images the page has received: the demo is the first job that runs."""
    page.page.wait_for_timeout(500)  # lets playwright hand over the messages that arrived
    previews = sum(kind in PREVIEW_EVENTS for kind in page.frames)
    print(f"  preview images during the demo's sampling: {previews} (and {page.frames.count('text')} text messages "
          "on the websocket)")
    failures.check(previews > 0, "no preview image reached the page while the demo sampled (server run with "
                                 "--preview-method auto)")


def check_decoding_progress(page: Page, run: DemoRun, failures: Failures) -> None:
    """Once sampling has begun, the bar also moves with another maximum: the decoder's slices. Sampling's maximum
    (its steps, or steps x segments) is the one most updates report."""
    events = page.evaluate("id => window.mtvCheck.progress.filter(p => p[3] === id)", run.prompt_id)
    maxima = Counter(event[2] for event in events)
    sampling = maxima.most_common(1)[0][0] if events else None
    begun = next((index for index, event in enumerate(events) if event[2] == sampling), len(events))
    decoding = [event for event in events[begun:] if event[2] != sampling]
    print(f"  progress: {len(events)} updates, {len(decoding)} while decoding (maxima seen {dict(maxima)}; "
          f"sampling's {sampling})")
    failures.check(len({(event[1], event[2]) for event in decoding}) > 1,
                   f"the progress bar did not move while the demo decoded: maxima {dict(maxima)}, none other than "
                   f"sampling's {sampling} after it began")


# In ComfyUI's log: its model management loading a model, and the pack when ComfyUI unloads one of its models.
MODEL_EVENTS = re.compile(r"Requested to load (\w+)|\[MTV\] ComfyUI moved (\w+) to")


def loaded_models(log: str, loaded: frozenset = frozenset()) -> tuple[frozenset, frozenset]:
    """The models loaded after a stretch of the log, starting from `loaded`; and every model it loads."""
    ever = set()
    for load, unload in MODEL_EVENTS.findall(log):
        if load:
            loaded, ever = loaded | {load}, ever | {load}
        else:
            loaded = loaded - {unload}
    return frozenset(loaded), frozenset(ever)


def check_free(server: ComfyServer, run_log: str, failures: Failures, timeout: float = 30) -> None:
    """POST /free after the demo: the models ComfyUI's model management still holds for it are unloaded (read from
    the server's log: nothing else outside the server tells a loaded model from an unloaded one on a CPU)."""
    held, ever = loaded_models(run_log)
    offset = server.log.stat().st_size
    server.post("/free", {"unload_models": True, "free_memory": True})
    deadline, left = time.monotonic() + timeout, held
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = loaded_models(server.log_since(offset), held)[0]
    print(f"  /free: ComfyUI loaded {sorted(ever)} for the demo and held {sorted(held)} after it; "
          f"{sorted(held - left)} unloaded on /free")
    failures.check(bool(ever), "ComfyUI's model management loaded none of the demo's models ('Requested to load' "
                               "in its log), so /free cannot unload them")
    failures.check(not left, f"/free left {sorted(left)} loaded after {timeout:.0f}s")


def with_demo_models(graph: dict, info: dict, steps: int = 10) -> dict:
    """The graph with every loader on the built-in demo's entry (as /object_info lists it) and fewer steps."""
    graph = json.loads(json.dumps(graph))
    for node in graph.values():
        spec = info.get(node["class_type"], {}).get("input", {}).get("required", {})
        for name in node["inputs"]:
            options = spec.get(name, [None])[0]
            demo = [o for o in options if str(o).startswith("demo (built-in")] if isinstance(options, list) else []
            if demo and "Loader" in node["class_type"]:
                node["inputs"][name] = demo[0]
        if "steps" in node["inputs"]:
            node["inputs"]["steps"] = steps
    return with_demo_text_encoder(graph)


def with_demo_text_encoder(graph: dict) -> dict:
    """Text Encode fed by the demo's own T5 (the VAE + T5 Loader's second output) instead of a core CLIP of a t5xxl
    file: the demo model reads the demo T5's embeddings."""
    loader = next(i for i, node in graph.items() if node["class_type"] == "MTVVAEAndT5Loader")
    for node_id, node in list(graph.items()):
        if node["class_type"] == "CLIPLoader":
            del graph[node_id]
        elif node["class_type"] == "MTVTextEncode" and node["inputs"].pop("clip", None) is not None:
            node["inputs"]["t5"] = [loader, 1]
    return graph


def check_start_image(server: ComfyServer, graph: dict, failures: Failures, timeout: float) -> None:
    """The Start image keyframe workflow on the demo's models: its mp4 has a sound stream as long as its picture."""
    entry = run_graph(server, with_demo_models(graph, server.get("/object_info")), timeout)
    videos = [] if isinstance(entry, str) else [i for i in output_items(entry) if i.get("filename", "").endswith(".mp4")]
    if not failures.check(bool(videos), f"Start image keyframe with the demo's models: {entry if isinstance(entry, str) else 'no mp4'}"):
        return
    picture, sound = mp4_seconds(server.get(f"/view?{view_query(videos[0])}"))
    print(f"  Start image keyframe: {picture:.2f}s of picture, " + (f"{sound:.2f}s of sound" if sound else "no sound"))
    failures.check(sound is not None and abs(sound - picture) < 0.1, f"Start image keyframe's mp4: {picture:.2f}s of "
                                                                      f"picture, sound {sound}")


def mp4_seconds(data: bytes) -> tuple[float, float | None]:
    """Seconds of picture and of sound (None: no sound stream) in an mp4."""
    import av

    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        picture = frames / float(video.average_rate)
    with av.open(io.BytesIO(data)) as container:
        if not container.streams.audio:
            return picture, None
        rate = container.streams.audio[0].rate
        return picture, sum(frame.samples for frame in container.decode(audio=0)) / rate


def view_query(item: dict) -> str:
    return urllib.parse.urlencode({k: item.get(k, "") for k in ("filename", "subfolder", "type")})


def run_graph(server: ComfyServer, graph: dict, timeout: float) -> dict | str:
    """POST an API graph and wait for it: its /history entry, or what went wrong."""
    request = urllib.request.Request(server.url + "/prompt", json.dumps({"prompt": graph}).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            prompt_id = json.loads(response.read())["prompt_id"]
    except urllib.error.HTTPError as error:
        return f"refused (HTTP {error.code}): {error.read()[:600].decode(errors='replace')}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = server.get(f"/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            if entry["status"].get("status_str") != "success":
                return json.dumps(entry["status"].get("messages"))[-600:]
            return entry
        time.sleep(1)
    return f"no result after {timeout:.0f}s"


def with_lora(graph: dict, name: str, strength: float) -> dict:
    """The graph with an MTV LoRA Loader between the model loader and everything that took its model."""
    wired = json.loads(json.dumps(graph))
    loader = next(node_id for node_id, node in wired.items() if node["class_type"] == "MTVModelLoader")
    for node in wired.values():
        for key, value in node["inputs"].items():
            if value == [loader, 0]:
                node["inputs"][key] = ["lora", 0]
    wired["lora"] = {"class_type": "MTVLoraLoader", "inputs": {"mtv_model": [loader, 0], "lora_name": name, "strength": strength}}
    return wired


def run_api(server: ComfyServer, graph: dict, timeout: float):
    """POST a graph with a SaveImage of Chain Segments' frames and wait for it; the frames as PNGs decode them
    (uint8 array), or the error text. (The mp4 cannot be compared: ComfyUI's own H.264 encoder is not
    reproducible run to run.)"""
    import numpy as np
    from PIL import Image

    graph = json.loads(json.dumps(graph))
    chain = next(node_id for node_id, node in graph.items() if node["class_type"] == "MTVChainSegments")
    graph["frames_png"] = {"class_type": "SaveImage", "inputs": {"images": [chain, 0], "filename_prefix": "mtv_check/frames"}}
    entry = run_graph(server, graph, timeout)
    if isinstance(entry, str):
        return entry
    images = (entry.get("outputs", {}).get("frames_png") or {}).get("images") or []
    if not images:
        return "no frames saved"
    frames = [np.asarray(Image.open(io.BytesIO(server.get(f"/view?{view_query(item)}"))).convert("RGB")) for item in images]
    return np.stack(frames).astype(int)


def in_own_folder(graph: dict, folder: str) -> dict:
    """The graph with Chain Segments working in `folder`, so it renders instead of resuming earlier segments."""
    graph = json.loads(json.dumps(graph))
    for node in graph.values():
        if node["class_type"] == "MTVChainSegments":
            node["inputs"]["work_folder"] = f"mtv_segments/{folder}"
    return graph


def check_lora(server: ComfyServer, base: Path, demo: dict, lora: Path, failures: Failures, timeout: float) -> None:
    """The demo rendered twice without a LoRA (does a repeat give the same video?), then with the LoRA at 1 and 0."""
    (base / "models" / "loras").mkdir(parents=True, exist_ok=True)
    shutil.copy(lora, base / "models" / "loras" / lora.name)
    graphs = {"first": demo, "repeat": demo, "strength 1": with_lora(demo, lora.name, 1.0),
              "strength 0": with_lora(demo, lora.name, 0.0)}
    results = {what: run_api(server, in_own_folder(graph, what.replace(" ", "_")), timeout) for what, graph in graphs.items()}
    for what, result in results.items():
        failures.check(not isinstance(result, str), f"demo with LoRA ({what}): {result}")
    if any(isinstance(result, str) for result in results.values()):
        return
    first, plain, on, off = results.values()
    moved = [index for index, (a, b) in enumerate(zip(first, plain)) if (a != b).any()]
    failures.check(not moved, f"the demo queued again renders differently: frames {moved[:1]}..{moved[-1:]} differ by up to "
                              f"{int(abs(first - plain).max()) if moved else 0} levels")
    changed, same = float(abs(on - plain).mean()), int(abs(off - plain).max())
    print(f"MTV LoRA Loader: strength 1 changes the demo by {changed:.2f} levels on average; strength 0 by at most {same}")
    failures.check(changed > 1.0 and same == 0, f"LoRA: strength 1 changed {changed:.2f}, strength 0 {same}")


def is_mp4(server: ComfyServer, item: dict) -> bool:
    data = server.get(f"/view?{view_query(item)}")
    return len(data) > 1000 and data[4:8] == b"ftyp"


def measure_interrupt(page: Page, server: ComfyServer, failures: Failures, timeout: float) -> float | None:
    """Queue the demo with another seed, press Cancel once sampling reports progress; seconds until it stops. Only
    events of this job count: under load the previous job's end can reach the page after this one is queued."""
    page.evaluate("""() => { const n = app.graph._nodes.find(n => n.type === 'MTVChainSegments');
                             n.widgets.find(w => w.name === 'seed').value += 1; return app.queuePrompt(0, 1); }""")
    deadline = time.monotonic() + timeout
    prompt_id = None
    while prompt_id is None and time.monotonic() < deadline:
        running = server.get("/queue").get("queue_running") or []
        prompt_id = running[0][1] if running else None
        time.sleep(0.1)
    progress = "id => window.mtvCheck.progress.filter(p => p[3] === id && p[2] > 10).length"
    while time.monotonic() < deadline and page.evaluate(progress, prompt_id) < 2:
        time.sleep(0.2)
    pressed = time.monotonic()
    server.post("/interrupt")
    while time.monotonic() < deadline:
        done = page.evaluate("id => window.mtvCheck.done.filter(d => (d[2] || {}).prompt_id === id)", prompt_id)
        if done:
            failures.check(done[-1][1] == "execution_interrupted", f"Cancel during sampling ended with {done[-1][1]}")
            return time.monotonic() - pressed
        time.sleep(0.1)
    failures.check(False, "Cancel during sampling: the job did not stop")
    return None


def check_runs(page: Page, server: ComfyServer, title: str, api_files: dict, failures: Failures, timeout: float) -> str:
    """The demo from the UI (its previews and decoding progress), /free after it, the Start image keyframe workflow
    on the demo's models, Cancel during sampling. Returns the demo's cell of the table."""
    offset = server.log.stat().st_size
    run = queue_demo(page, server, title, failures, timeout)
    if run is not None:
        check_previews(page, failures)
        check_decoding_progress(page, run, failures)
        check_free(server, server.log_since(offset), failures)
    check_start_image(server, api_files[START_IMAGE], failures, timeout)
    stop = measure_interrupt(page, server, failures, timeout)
    print(f"Cancel during sampling stopped the job in {stop:.2f}s" if stop is not None else "Cancel: no stop")
    return f"yes, mp4 in {run.seconds:.0f}s" if run is not None else "NO"


def check_template_cards(shown: dict, failures: Failures) -> None:
    failures.check(bool(shown), "the template browser did not open on the pack's page")
    cut = [title for title, how in shown.items() if how == "cut"]
    failures.check(not cut, f"the template browser's cards cut the titles {cut}")
    missing = [title for title, how in shown.items() if how == "missing"]
    if missing:
        print(f"  note: no element shows these titles whole on the pack's page (not checked): {missing}")


def ui_titles() -> list[str]:
    """UI workflow titles, the demo first (as the builder writes them)."""
    titles = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
    return sorted(titles, key=lambda t: "Demo" not in t)


def api_name(title: str) -> str:
    """The API file of a UI workflow, which the builder names in its `extra.mtv_api`."""
    return json.loads((WORKFLOWS / f"{title}.json").read_text())["extra"]["mtv_api"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", required=True, type=Path, help="a ComfyUI checkout (main.py)")
    parser.add_argument("--front-end-root", help="a frontend's static folder, e.g. .../comfyui_frontend_package/static")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs ComfyUI")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--screenshots", type=Path, default=Path("comfyui-screenshots"))
    parser.add_argument("--timeout", type=float, default=600, help="seconds the demo may take from the UI")
    parser.add_argument("--skip-queue", action="store_true", help="only load and compare, do not run the demo")
    parser.add_argument("--lora", type=Path, help="an MTV LoRA for the demo model: check the LoRA Loader with it")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    args.screenshots.mkdir(parents=True, exist_ok=True)
    failures, rows, label = Failures(), [], "frontend not reached"
    api_files = {p.stem: json.loads(p.read_text()) for p in (WORKFLOWS / "api").glob("*.json")}
    titles = ui_titles()
    with tempfile.TemporaryDirectory(prefix="mtv-comfyui-") as base:
        server = ComfyServer(args.comfyui.resolve(), args.python, Path(base), args.front_end_root)
        try:
            server.wait_ready()
            types = check_server(server, failures, titles)
            check_example_inputs(server, failures)
            check_validation(server, api_files[DEMO], failures)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_FLAGS)
                page = Page(browser, server.url, failures)
                label = f"frontend {page.version}"
                print(f"ComfyUI at {server.url} with {label}; log {server.log}")
                check_template_cards(page.screenshot_templates(args.screenshots / f"template browser [{label}].png", titles), failures)
                check_nodes(page, types, failures)
                check_upload(page, server, Path(base), failures)
                for title in titles:
                    started = time.monotonic()
                    loaded = check_workflow(page, server, title, api_files[api_name(title)], args.screenshots, label, failures)
                    rows.append([title, "yes" if loaded else "NO", "-", f"{time.monotonic() - started:.1f}"])
                if not args.skip_queue:
                    rows[0][2] = check_runs(page, server, titles[0], api_files, failures, args.timeout)
                browser.close()
            if args.lora:
                check_lora(server, Path(base), api_files[DEMO], args.lora.resolve(), failures, args.timeout)
        finally:
            server.stop()
            shutil.copy(server.log, args.screenshots / "comfyui.log")
    print(f"\n| workflow | loads | runs from the UI | seconds to load |  ({label})\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nscreenshots and the server's log in {args.screenshots}")
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
