"""Our models under a real ComfyUI's model management, and core's T5 against ours, on the CPU:

    python tools/check_comfy_models.py --comfyui PATH [--json OUT]

Run it with ComfyUI's Python (it needs the pack's dependencies too).
1. T5 agreement: a T5 of the T5-XXL layout that core's Load CLIP recognises (d_model 4096, 24 layers; one head of 8
   and d_ff 8 keep it small) with random weights, saved as a t5xxl file in fp16 and in fp8 (e4m3fn), loaded with
   core's load_clip (type sd3; the small sizes given through core's own `t5xxl_model_config` option), encoded through
   MTV Text Encode's core-CLIP path and through our Hugging Face path on the same weights. Prints the largest
   difference, and for scale the one between our path in bf16 (the official pipeline's T5 dtype) and in fp32.
2. Model management: starts ComfyUI (--cpu) with this pack and a probe route listing comfy.model_management's
   loaded models, then: the demo; POST /free (unload_models); the demo again with ComfyUI's cached loaders (the
   unloaded models are used again); a core graph (VAELoader taesd + VAEDecode + SaveImage) while ours are loaded;
   POST /free (unload_models, free_memory). Prints each step's result and how many of our models are loaded.
Exit status 0 when every step ran and /free left none of our models loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the pack first: its `nodes` package, not ComfyUI's nodes.py
from comfyui_check.graphs import in_own_folder  # noqa: E402
from comfyui_check.server import ComfyServer, run_graph  # noqa: E402

TINY_T5 = {"d_ff": 8, "d_kv": 8, "num_heads": 1}  # with the XXL file's d_model 4096, 24 layers and vocabulary
PROMPTS = ["One person conversation. Persons: Person1: a woman with short grey hair (left), seen in a close-up. "
           "Person1 is speaking. Scene Description: a kitchen at night, (warm light:1.3).",
           "A red car drives past a row of shops; rain. " * 30]  # the second is cut to 226 tokens
PROBE = '''
import comfy.model_management as mm
from aiohttp import web
from server import PromptServer

NODE_CLASS_MAPPINGS = {}


@PromptServer.instance.routes.get("/mtv_probe/loaded")
async def loaded(request):
    return web.json_response([{"class": type(m.model.model).__name__, "mtv": hasattr(m.model.model, "_mtv_comfy_patcher")}
                              for m in mm.current_loaded_models if m.model is not None])
'''


# -- 1. T5 agreement --------------------------------------------------------------------------------------------
def t5_agreement(folder: Path) -> dict:
    import comfy.sd
    import torch
    from safetensors.torch import save_file

    from mtv_core.text import PromptTruncatedWarning, TextEncoder
    from nodes.core_clip import encode_with_core_clip

    warnings.simplefilter("ignore", PromptTruncatedWarning)  # the long prompt is cut on purpose

    reference = random_xxl_layout_t5()
    state = {k: v for k, v in reference.state_dict().items() if k != "encoder.embed_tokens.weight"}  # tied to shared
    found = {}
    for label, dtype in (("fp16", torch.float16), ("fp8_e4m3fn", torch.float8_e4m3fn)):
        path = folder / f"t5xxl_{label}.safetensors"
        save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, str(path))
        clip = comfy.sd.load_clip([str(path)], clip_type=comfy.sd.CLIPType.SD3, model_options={"t5xxl_model_config": TINY_T5})
        ours = TextEncoder(clip.tokenizer.t5xxl.tokenizer, same_weights_in(reference, dtype))
        core = encode_with_core_clip(clip, PROMPTS)
        found[label] = (core - ours.encode(PROMPTS)).abs().max().item()
        print(f"T5 agreement, {label} file: core's T5 vs our Hugging Face path, max |difference| {found[label]:.3g} "
              f"(values up to {core.abs().max().item():.3g}, shape {tuple(core.shape)})", flush=True)
    fp32, bf16 = (TextEncoder(clip.tokenizer.t5xxl.tokenizer, reference.to(dtype)).encode(PROMPTS)
                  for dtype in (torch.float32, torch.bfloat16))
    found["official_bf16_vs_fp32"] = (bf16 - fp32).abs().max().item()
    print(f"  for scale: our path in bf16 (the official T5 dtype) vs fp32: {found['official_bf16_vs_fp32']:.3g}")
    return found


def random_xxl_layout_t5():
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(vocab_size=32128, d_model=4096, num_layers=24, feed_forward_proj="gated-gelu",
                      is_encoder_decoder=False, use_cache=False, tie_word_embeddings=False, **TINY_T5)
    model = T5EncoderModel(config).eval()
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "layer_norm" in name:
                weight.uniform_(0.5, 1.5)  # not all ones, so the norms' weights count
    return model


def same_weights_in(model, dtype):
    """A float32 copy of `model` whose weights went through `dtype` as the file's did."""
    import copy

    import torch

    twin = copy.deepcopy(model)
    with torch.no_grad():
        for weight in twin.parameters():
            weight.copy_(weight.to(dtype).float())
    return twin


# -- 2. model management ----------------------------------------------------------------------------------------
def model_management(comfyui: Path, python: str, base: Path, timeout: float) -> dict:
    make_taesd(base / "models" / "vae_approx")
    (base / "custom_nodes" / "mtv_probe").mkdir(parents=True)
    (base / "custom_nodes" / "mtv_probe" / "__init__.py").write_text(PROBE)
    demo = json.loads((ROOT / "workflows" / "api" / "mtv_demo.json").read_text())
    core = {"1": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}},
            "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 0]}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "core_check"}}}
    server = ComfyServer(comfyui, python, base, None)
    found = {}
    try:
        server.wait_ready()
        found["demo"] = step(server, "the demo", run_graph(server, in_own_folder(demo, "first"), timeout))
        found["free_unload_models"] = free(server, {"unload_models": True})
        found["demo_again"] = step(server, "the demo again, its loaders cached", run_graph(server, in_own_folder(demo, "again"), timeout))
        found["core_graph"] = step(server, "a core graph (taesd VAEDecode) with ours loaded", run_graph(server, core, timeout))
        found["free_memory"] = free(server, {"unload_models": True, "free_memory": True})
    finally:
        server.stop()
    found["log"] = log_check(server.log.read_text(errors="replace"))
    return found


def log_check(log: str) -> dict:
    """ComfyUI warns of a model it tracks whose patcher died before the model ("memory leak")."""
    leaks = [line for line in log.splitlines() if "memory leak" in line.lower()]
    unloads = sum("[MTV] ComfyUI moved" in line for line in log.splitlines())
    print(f"server log: {unloads} unloads of our models by ComfyUI, {len(leaks)} memory-leak warnings {leaks[:3]}")
    return {"ok": not leaks, "leak_warnings": leaks, "unloads": unloads}


def make_taesd(folder: Path) -> None:
    """Random weights for core's TAESD (a VAE that loads and decodes in a moment on the CPU)."""
    import comfy.taesd.taesd
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    taesd = comfy.taesd.taesd.TAESD()
    for part in ("encoder", "decoder"):
        save_file(getattr(taesd, f"taesd_{part}").state_dict(), str(folder / f"taesd_{part}.safetensors"))


def loaded(server) -> list[dict]:
    return server.get("/mtv_probe/loaded")


def step(server, what: str, entry) -> dict:
    models = loaded(server)
    ok = isinstance(entry, dict)
    ours = [m["class"] for m in models if m["mtv"]]
    print(f"{what}: {'ran' if ok else 'FAILED: ' + str(entry)}; loaded now: {len(ours)} of ours {ours}, "
          f"{len(models) - len(ours)} of core's", flush=True)
    return {"ok": ok, "ours_loaded": ours, "core_loaded": len(models) - len(ours)}


def free(server, payload: dict, wait: float = 30) -> dict:
    """POST /free and wait for the prompt worker to act on it (it does between queue items)."""
    server.post("/free", payload)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(m["mtv"] for m in loaded(server)):
        time.sleep(0.5)
    ours = [m["class"] for m in loaded(server) if m["mtv"]]
    print(f"POST /free {json.dumps(payload)}: {len(ours)} of our models still loaded {ours}", flush=True)
    return {"ok": not ours, "ours_loaded": ours}


def use_comfy_on_the_cpu(comfyui: Path) -> None:
    """This process imports core's T5 and TAESD from the checkout, as ComfyUI started with --cpu would."""
    sys.path.insert(1, str(comfyui))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="a ComfyUI checkout")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs ComfyUI (default: this one)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per graph")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    use_comfy_on_the_cpu(args.comfyui.resolve())
    with tempfile.TemporaryDirectory(prefix="mtv-models-") as scratch:
        scratch = Path(scratch)
        results = {"t5": t5_agreement(scratch),
                   "model_management": model_management(args.comfyui.resolve(), args.python, scratch / "base", args.timeout)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    passed = all(outcome["ok"] for outcome in results["model_management"].values())
    print("all steps passed" if passed else "SOME STEPS FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
