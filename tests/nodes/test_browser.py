"""The real-browser check (tools/check_comfyui.py) against a real ComfyUI, when one is given:

    MTV_COMFYUI_DIR=/path/to/ComfyUI MTV_COMFYUI_PYTHON=/path/to/its/venv/bin/python \\
    [MTV_FRONT_END_ROOT=.../comfyui_frontend_package/static] python -m pytest tests/nodes/test_browser.py

MTV_COMFYUI_PYTHON runs both ComfyUI and the check, so it needs the pack's dependencies and playwright; the browser
is Debian's chromium. Skipped when MTV_COMFYUI_DIR is not set (CI has no ComfyUI checkout).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMFYUI = os.environ.get("MTV_COMFYUI_DIR")


@pytest.mark.skipif(not COMFYUI, reason="set MTV_COMFYUI_DIR to a ComfyUI checkout to run the real-browser check")
def test_every_workflow_builds_and_the_demo_runs_from_the_browser(tmp_path):
    python = os.environ.get("MTV_COMFYUI_PYTHON", sys.executable)
    command = [python, str(ROOT / "tools" / "check_comfyui.py"), "--comfyui", COMFYUI, "--python", python,
               "--screenshots", str(tmp_path)]
    if os.environ.get("MTV_FRONT_END_ROOT"):
        command += ["--front-end-root", os.environ["MTV_FRONT_END_ROOT"]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "all checks passed" in result.stdout and "yes, mp4 in" in result.stdout
    for ran in ("example inputs:", "preview images during the demo's sampling:", "while decoding", "/free:",
                "Start image keyframe:", "Cancel during sampling stopped"):
        assert ran in result.stdout, f"the check skipped {ran!r}"
    assert len(list(tmp_path.glob("*.png"))) == 9  # the template browser and each workflow at its opening view
