"""Our models under a real ComfyUI's model management, and core's T5 against ours (tools/check_comfy_models.py),
when a ComfyUI checkout is given:

    MTV_COMFYUI_DIR=/path/to/ComfyUI MTV_COMFYUI_PYTHON=/path/to/its/venv/bin/python \\
    python -m pytest tests/nodes/test_comfy_real.py

MTV_COMFYUI_PYTHON runs ComfyUI and the check, so it needs the pack's dependencies. Skipped when MTV_COMFYUI_DIR is
not set (CI has no ComfyUI checkout).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMFYUI = os.environ.get("MTV_COMFYUI_DIR")
OURS = ["AutoencoderKLCogVideoX", "MTVTransformer3DModel", "T5EncoderModel", "Wav2Vec2Model"]
# Core's T5 and ours on the same weights, both computing in fp32 on the CPU: 1.3e-5 (fp16 file) and 1.4e-5 (fp8
# file) measured, on embeddings up to about 6 (ComfyUI 0.3.64, torch 2.9.1); for scale, our own path in bf16, the
# official T5 dtype, is 0.16 from fp32.
T5_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("comfy_models") / "results.json"
    python = os.environ.get("MTV_COMFYUI_PYTHON", sys.executable)
    command = [python, str(ROOT / "tools" / "check_comfy_models.py"), "--comfyui", COMFYUI, "--python", python,
               "--json", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return json.loads(out.read_text())


pytestmark = pytest.mark.skipif(not COMFYUI, reason="set MTV_COMFYUI_DIR to a ComfyUI checkout to run against it")


def test_free_releases_our_models_and_both_graphs_run_again(results):
    steps = results["model_management"]
    assert sorted(steps["demo"]["ours_loaded"]) == OURS  # all four registered and loaded by ComfyUI
    assert steps["free_unload_models"]["ours_loaded"] == [] and steps["free_memory"]["ours_loaded"] == []
    assert steps["demo_again"]["ok"] and steps["demo_again"]["ours_loaded"]  # the unloaded models, loaded again
    assert steps["core_graph"]["ok"] and steps["core_graph"]["core_loaded"] == 1
    # 4 moved off at the first /free; the 2 reloaded ones are moved off at the second, unless the core graph's run
    # evicted the demo's outputs first and ComfyUI dropped them with their modules (no move to log; no leak either)
    assert steps["log"]["leak_warnings"] == [] and steps["log"]["unloads"] >= 4


def test_core_t5_encodes_as_our_hugging_face_path(results):
    assert results["t5"]["fp16"] < T5_TOLERANCE and results["t5"]["fp8_e4m3fn"] < T5_TOLERANCE
    assert results["t5"]["official_bf16_vs_fp32"] > 100 * T5_TOLERANCE  # the check can tell a dtype's difference
