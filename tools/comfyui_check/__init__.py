"""The pieces of tools/check_comfyui.py: the server it starts (server), the page it drives (page), the graphs it
edits (graphs) and the runs it queues and measures (runs)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
PACK = "comfyui-mtv"  # the pack's folder name under custom_nodes, which ComfyUI lists its templates under


class Failures(list):
    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.append(what)
            print(f"  FAIL {what}", flush=True)
        return ok
