"""The ComfyUI page in headless Chromium, and the checks made on it: nodes built, the upload button, every
workflow loaded as its API file says, the template browser's cards."""

from __future__ import annotations

import json
from pathlib import Path

from . import PACK, WORKFLOWS, Failures
from .server import ComfyServer


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


def check_template_cards(shown: dict, failures: Failures) -> None:
    failures.check(bool(shown), "the template browser did not open on the pack's page")
    cut = [title for title, how in shown.items() if how == "cut"]
    failures.check(not cut, f"the template browser's cards cut the titles {cut}")
    missing = [title for title, how in shown.items() if how == "missing"]
    if missing:
        print(f"  note: no element shows these titles whole on the pack's page (not checked): {missing}")
