"""The runs the check queues and what it measures of them: the demo from the UI (previews, decoding progress,
/free), the Start image keyframe's sound, Cancel during sampling, a LoRA's effect."""

from __future__ import annotations

import io
import json
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from . import WORKFLOWS, Failures
from .graphs import in_own_folder, with_demo_models, with_lora
from .page import PREVIEW_EVENTS, Page
from .server import ComfyServer, is_mp4, mp4_seconds, output_items, run_graph, view_query

START_IMAGE = "mtv_start_image_keyframe"


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
