"""Our models under ComfyUI's model management (a stand-in for comfy.model_management / comfy.model_patcher that
calls our patchers as the real one does), block swap auto, and a core CLIP as the text encoder (a stand-in that
wraps the demo T5 behind core's CLIP interface). tests/nodes/test_comfy_real.py runs the same against a real
ComfyUI checkout."""

import contextlib
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from graph_runner import StandInCoreClip, run_workflow

from mtv_core import demo
from mtv_core.errors import ConfigError, ModelFileError, MTVError
from mtv_core.pipeline.guidance import MAX_BRANCHES
from mtv_core.pipeline.memory import (
    ACTIVATION_ELEMENTS,
    OFFICIAL_VAE_BYTES,
    module_bytes,
    render_working_bytes,
    vae_decode_bytes,
)
from mtv_core.checkpoints import load_text_encoder
from mtv_core.text import PromptTruncatedWarning
from nodes import comfy_adapter as comfy
from nodes import model_management as management
from nodes.conditioning import MTVApply, MTVTextEncode
from nodes.loaders import NO_T5, MTVModelLoader, MTVVAEAndT5Loader, MTVWav2VecLoader, auto_block_swap

ROOT = Path(__file__).resolve().parents[2]
DEMO = comfy.DEMO_CHOICE


class StandInModelPatcher:
    """What our ModulePatcher inherits from comfy.model_patcher.ModelPatcher and relies on."""

    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model, self.load_device, self.offload_device, self.size = model, load_device, offload_device, size

    def model_size(self):
        return self.size

    def detach(self, unpatch_all=True):
        if unpatch_all:
            self.unpatch_model(self.offload_device, unpatch_weights=unpatch_all)
        return self.model


class StandInModelManagement(types.ModuleType):
    """load_models_gpu loads each patcher whole as LoadedModel.model_load does; unload_all_models detaches them."""

    def __init__(self, device="cpu"):
        super().__init__("comfy.model_management")
        self.device = torch.device(device)
        self.loads = []  # (modules, memory_required) per load_models_gpu call
        self.current_loaded_models = []
        self.free = 0

    def get_torch_device(self):
        return self.device

    def unet_offload_device(self):
        return torch.device("cpu")

    def load_models_gpu(self, models, memory_required=0, **_):
        self.loads.append(([patcher.model for patcher in models], memory_required))
        for patcher in models:
            patcher.partially_load(patcher.load_device, 1e32)
        self.current_loaded_models = list(models)

    def unload_all_models(self):
        for patcher in self.current_loaded_models:
            patcher.detach()
        self.current_loaded_models = []

    def get_free_memory(self, device=None):
        return self.free

    def extra_reserved_memory(self):
        return 0


@pytest.fixture
def model_management(monkeypatch):
    mm = StandInModelManagement()
    package = types.ModuleType("comfy")
    package.model_management = mm
    package.model_patcher = types.SimpleNamespace(ModelPatcher=StandInModelPatcher)
    monkeypatch.setitem(sys.modules, "comfy", package)
    monkeypatch.setitem(sys.modules, "comfy.model_management", mm)
    monkeypatch.setitem(sys.modules, "comfy.model_patcher", package.model_patcher)
    management._module_patcher_type.cache_clear()
    yield mm
    management._module_patcher_type.cache_clear()


def patcher(module):
    return getattr(module, management.PATCHER_ATTRIBUTE)


def demo_graph(work_folder="mtv_segments/comfy_models"):
    graph = json.loads((ROOT / "workflows" / "api" / "mtv_demo.json").read_text())
    graph["10"]["inputs"].update(steps=2, work_folder=work_folder)
    return graph


# -- model management -------------------------------------------------------------------------------------------
def test_each_node_has_comfyui_load_its_models_right_before_it_computes(model_management, comfy_env):
    graph = demo_graph()
    results = run_workflow(graph)
    handle, (vae, t5), (wav2vec,) = results["1"][0], results["2"], results["3"]
    model = handle.model
    working = render_working_bytes(model, vae)
    assert model_management.loads == [([wav2vec.model], 0), ([t5.encoder], 0), ([model, vae], working)]
    assert working >= 5 * 18 * (226 + 13 * 4 * 6) * 128 * 4  # every guidance branch of the demo model's tokens
    assert patcher(model).model_size() == module_bytes(model) - module_bytes(model.audio_encoders)


def test_a_graph_runs_again_after_comfyui_unloaded_our_models(model_management, comfy_env):
    first = run_workflow(demo_graph("mtv_segments/before_unload"))
    loaders = {node: first[node] for node in ("1", "2", "3")}  # ComfyUI keeps the loaders' outputs
    model_management.unload_all_models()
    assert model_management.current_loaded_models == []
    again = run_workflow(demo_graph("mtv_segments/after_unload"), loaders)  # its own folder: sampled, not resumed
    assert torch.equal(first["10"][0], again["10"][0])
    assert len(model_management.loads) == 6  # loaded again, each right before its node computed


def test_the_transformer_registers_only_what_comfyui_moves_and_counts(model_management):
    handle = MTVModelLoader().load(DEMO, "fp32", "sdpa", 2, False, False)[0]
    model, swap = handle.model, handle.swap
    registered = patcher(model)
    streamed = module_bytes(model.audio_encoders) + sum(module_bytes(block) for block in swap.blocks)
    assert registered.model_size() == module_bytes(model) - streamed
    assert registered.loaded_size() == registered.model_size()  # the stand-in's device is the CPU
    assert registered.partially_unload(torch.device("cpu"), 1) == 0  # whole or nothing: ComfyUI then detaches it
    weight = next(swap.blocks[0].parameters())
    cpu_copy = swap._cpu_copies[id(weight)]
    registered.detach()
    registered.partially_load(registered.load_device, 1e32)
    assert weight.data_ptr() == cpu_copy.data_ptr()  # the streamed blocks stay where BlockSwap keeps them


def test_loaded_size_counts_only_the_tensors_on_comfyuis_device(model_management):
    module = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4))
    management.manage(module, exclude=(module[1],))
    module[0].to("meta")  # a stand-in for "on another device" (our own code moved it)
    assert patcher(module).model_size() == module_bytes(module[0])
    assert patcher(module).loaded_size() == 0 and patcher(module).current_loaded_device() == torch.device("cpu")


def test_vae_t5_and_wav2vec_are_registered_and_nothing_is_without_comfyui(model_management, monkeypatch):
    vae, t5 = MTVVAEAndT5Loader().load(DEMO, DEMO, "fp32")
    (wav2vec,) = MTVWav2VecLoader().load(DEMO)
    for module in (vae, t5.encoder, wav2vec.model):
        assert patcher(module).model_size() == module_bytes(module)
    monkeypatch.setattr(management, "_model_management", lambda: None)  # as when `import comfy` fails
    bare_vae, bare_t5 = MTVVAEAndT5Loader().load(DEMO, DEMO, "fp32")
    assert not hasattr(bare_vae, management.PATCHER_ATTRIBUTE) and not hasattr(bare_t5.encoder, management.PATCHER_ATTRIBUTE)
    assert management.use_models([bare_vae]) is False


def test_block_swap_auto_keeps_the_fewest_blocks_in_cpu_memory_that_make_room(model_management):
    model = MTVModelLoader().load(DEMO, "fp32", "sdpa", 0, False, False)[0].model
    gpu = torch.device("cuda", 0)
    resident = module_bytes(model) - module_bytes(model.audio_encoders)
    block = module_bytes(model.transformer_blocks[0])
    config = model.config
    tokens = 226 + 13 * (config.sample_height // 2) * (config.sample_width // 2)
    reserve = ACTIVATION_ELEMENTS * MAX_BRANCHES * tokens * 128 * 4 + OFFICIAL_VAE_BYTES
    room_for = {resident + reserve: 0, resident - 2 * block + reserve: 2, resident - 2 * block + reserve - 1: 3, 1: 4}
    for available, count in room_for.items():
        model_management.free = available
        assert auto_block_swap(model, gpu) == count, available
    other = types.SimpleNamespace(device=gpu, model_loaded_memory=lambda: block)  # a model ComfyUI would unload
    model_management.current_loaded_models = [other]
    model_management.free = resident - 3 * block + reserve
    assert auto_block_swap(model, gpu) == 2
    assert auto_block_swap(model, torch.device("cpu")) == 0


def test_block_swap_auto_overrides_the_count_and_is_zero_on_the_cpu(model_management):
    handle = MTVModelLoader().load(DEMO, "fp32", "sdpa", 3, False, False, block_swap_auto=True)[0]
    assert handle.swap is None and handle.memory.block_swap == 0
    assert patcher(handle.model).model_size() == module_bytes(handle.model) - module_bytes(handle.model.audio_encoders)


def test_working_memory_of_a_decode_follows_its_tile():
    from diffusers import AutoencoderKLCogVideoX

    with torch.device("meta"):
        vae = AutoencoderKLCogVideoX()  # the official config, fp32
    whole, tile = vae_decode_bytes(vae, 60, 90), vae_decode_bytes(vae, 16, 16)
    assert whole == 211 * 480 * 720 * 128 * 4 and tile * 60 * 90 == whole * 16 * 16


# -- core CLIP as the text encoder ------------------------------------------------------------------------------
def encode(**inputs):
    values = {"conversation": "custom", "scene": "", "person1": "", "person2": "", "speaker": 1, **inputs}
    return MTVTextEncode().encode(**values)[0].embeddings


@pytest.mark.parametrize("scene", ["one man is speaking", "(a red car:1.5) and (one) man", "car " * 300])
def test_a_core_clip_encodes_exactly_as_our_t5_with_the_same_226_tokens(scene):
    t5 = load_text_encoder(demo.T5, dtype=torch.float32)
    clip = StandInCoreClip(t5)
    with pytest.warns(PromptTruncatedWarning) if len(scene) > 900 else contextlib.nullcontext():
        from_clip, from_t5 = encode(scene=scene, clip=clip), encode(scene=scene, t5=t5)
    expected = t5.tokenizer(scene, padding="max_length", max_length=226, truncation=True).input_ids
    assert clip.seen[0][0].tolist() == expected and expected[-1] in (0, t5.tokenizer.eos_token_id)
    assert from_clip.shape == (1, 226, 32)
    assert torch.equal(from_clip, from_t5)


def test_a_connected_clip_is_used_instead_of_the_t5_folder():
    t5 = load_text_encoder(demo.T5, dtype=torch.float32)
    clip = StandInCoreClip(load_text_encoder(demo.T5, dtype=torch.float32))
    torch.nn.init.zeros_(clip.encoder.shared.weight)
    assert not torch.equal(encode(scene="a red car", t5=t5, clip=clip), encode(scene="a red car", t5=t5))
    assert len(clip.seen) == 1


def test_text_encode_says_what_to_connect_when_it_has_no_encoder():
    with pytest.raises(ConfigError, match="input 'clip': no text encoder.*Load CLIP \\(t5xxl_fp16.safetensors, type sd3\\)"):
        encode(scene="a red car")
    with pytest.raises(ConfigError, match="input 'clip': this CLIP holds no T5-XXL.*type sd3"):
        encode(scene="a red car", clip=types.SimpleNamespace(tokenizer=types.SimpleNamespace(clip_l=object())))


def test_a_clip_that_masks_padding_is_refused():
    clip = StandInCoreClip(load_text_encoder(demo.T5, dtype=torch.float32), masks_padding=True)
    with pytest.raises(ConfigError, match="input 'clip': this CLIP masks the padding tokens.*type sd3"):
        encode(scene="a red car", clip=clip)


def test_the_t5_folder_is_optional_in_the_loader_and_a_single_t5_file_points_to_load_clip(comfy_env):
    models, _, _ = comfy_env
    assert MTVVAEAndT5Loader.INPUT_TYPES()["required"]["t5_name"][0][-1] == NO_T5
    vae, t5 = MTVVAEAndT5Loader().load("cogvideox5b_vae.safetensors", NO_T5, "auto")
    assert t5 is None and MTVVAEAndT5Loader.IS_CHANGED(vae_name="cogvideox5b_vae.safetensors", t5_name=NO_T5)
    (models / "text_encoders" / "t5xxl_fp16.safetensors").write_bytes(b"core's single file")
    try:
        with pytest.raises(ModelFileError, match="t5_name.*single-file T5.*Load CLIP \\(type sd3\\).*'clip' input"):
            MTVVAEAndT5Loader().load("cogvideox5b_vae.safetensors", "t5xxl_fp16.safetensors", "auto")
    finally:
        (models / "text_encoders" / "t5xxl_fp16.safetensors").unlink()


def test_apply_refuses_text_embeddings_of_another_width(comfy_env):
    results = run_workflow({node: spec for node, spec in demo_graph().items() if node in {"1", "3", "6", "7", "20", "21", "22"}})
    handle, features = results["1"][0], results["7"][0]
    from nodes.payloads import TextConditioning

    wide = TextConditioning(types.SimpleNamespace(entries=()), torch.zeros(1, 226, 4096))
    with pytest.raises(MTVError, match="'text' holds 4096-wide T5 embeddings but the single model reads 32-wide"):
        MTVApply().apply(handle, wide, features, 1, 1, 1, 3.5, 3.5, 3.5, 3.5)


@pytest.mark.parametrize("until, problem", [("speech:0.6", "is not understood"), ("voice=0.5", "no condition"),
                                            ("1.5", "out of range")])
def test_apply_names_a_guidance_until_it_cannot_use(comfy_env, until, problem):
    results = run_workflow({node: spec for node, spec in demo_graph().items() if node in {"1", "3", "6", "7", "20", "21", "22"}})
    handle, features = results["1"][0], results["7"][0]
    from nodes.payloads import TextConditioning

    text = TextConditioning(types.SimpleNamespace(entries=()), torch.zeros(1, 226, 32))
    with pytest.raises(MTVError, match=f"guidance_until.*{problem}"):
        MTVApply().apply(handle, text, features, 1, 1, 1, 3.5, 3.5, 3.5, 3.5, guidance_until=until)
    (conditioning,) = MTVApply().apply(handle, text, features, 1, 1, 1, 3.5, 3.5, 3.5, 3.5, guidance_until="speech=0.6")
    assert conditioning.guidance.until == {"speech": 0.6}


def test_apply_passes_the_speech_guidance_in_pauses_and_names_a_keep_without_it(comfy_env):
    results = run_workflow({node: spec for node, spec in demo_graph().items() if node in {"1", "3", "6", "7", "20", "21", "22"}})
    handle, features = results["1"][0], results["7"][0]
    from nodes.payloads import TextConditioning

    text = TextConditioning(types.SimpleNamespace(entries=()), torch.zeros(1, 226, 32))
    assert features.features.levels["speech"].shape == (features.features.num_padded_frames,)  # encoded with levels
    (conditioning,) = MTVApply().apply(handle, text, features, 1, 1, 1, 3.5, 8.0, 3.5, 3.5,
                                       speech_guidance_in_pauses=1.0, speech_pause_keep=0.1)
    assert (conditioning.guidance.speech_in_pauses, conditioning.guidance.speech_pause_keep) == (1.0, 0.1)
    (plain,) = MTVApply().apply(handle, text, features, 1, 1, 1, 3.5, 8.0, 3.5, 3.5)
    assert plain.guidance.speech_in_pauses is None and plain.guidance.speech_pause_keep is None
    with pytest.raises(MTVError, match="input 'speech_pause_keep'.*without a speech scale in pauses"):
        MTVApply().apply(handle, text, features, 1, 1, 1, 3.5, 8.0, 3.5, 3.5, speech_pause_keep=0.1)
