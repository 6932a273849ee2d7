"""The real-browser check: a real ComfyUI with this pack, opened in headless Chromium as a user opens it.

    python tools/check_comfyui.py --comfyui PATH [--front-end-root PATH] [--screenshots DIR]

Starts the ComfyUI checkout at PATH on 127.0.0.1 with its own --base-directory (a temporary folder holding only
this pack, so no other install is touched) and --preview-method auto, then:
- checks the example inputs (the demo's and the official workflows') are in the server's input folder, as shipped,
  once ComfyUI has asked Load Audio for its file list, and served by /view;
- in Chromium driven by playwright: builds every node of the pack and fails on a node that cannot be built or a
  widget named UNKNOWN;
- loads every UI workflow and fails on any page error (a 404 included), any node not built, any widget value that
  differs from the workflow's API-format file, and an audio player that cannot fetch its file; screenshots each
  workflow at the view it opens with;
- checks the template browser's list (the demo first by name, as its A-Z sort shows it), a thumbnail per
  workflow, and that no card cuts its title;
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

playwright (`pip install playwright`). The browser is Debian's chromium (`--chromium`), not playwright's download.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
from pathlib import Path

from comfyui_check import PACK, ROOT, WORKFLOWS, Failures
from comfyui_check.page import Page, check_nodes, check_template_cards, check_upload, check_workflow
from comfyui_check.runs import check_lora, check_runs
from comfyui_check.server import ComfyServer

# input subfolder ("": the input folder) -> the shipped files Load Audio's first file list puts there
SHIPPED_INPUTS = {"mtv-demo": ROOT / "mtv_core" / "demo" / "example", "": WORKFLOWS / "inputs"}
INPUT_SUFFIXES = {".wav", ".mp4", ".png"}
DEMO = "mtv_demo"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


def check_server(server: ComfyServer, failures: Failures, titles: list[str]) -> list[str]:
    info = server.get("/object_info")
    ours = sorted(name for name, node in info.items() if node.get("python_module", "").endswith(PACK))
    failures.check(len(ours) >= 14, f"the pack registered {len(ours)} nodes: {ours}")
    listed = server.get("/workflow_templates").get(PACK, [])
    failures.check(sorted(listed) == sorted(titles), f"template browser lists {listed}, expected {titles}")
    by_name = sorted(listed, key=str.casefold)  # ComfyUI serves them in directory order; the browser can sort A-Z
    failures.check(bool(listed) and api_name(by_name[0]) == DEMO, f"the demo does not sort first by name: {by_name[:1]}")
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


def ui_titles() -> list[str]:
    """UI workflow titles by name: the demo's sorts first (the builder names it so)."""
    return sorted((p.stem for p in WORKFLOWS.glob("*.json")), key=str.casefold)


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
