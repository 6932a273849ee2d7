"""ComfyUI nodes: thin wrappers over mtv_core, defined with the classic node API.

Importing this package does no heavy work: torch, diffusers and the models load when a node runs.
A node whose optional dependency is missing is left out, with a message saying what to install.
"""

import importlib.util
import logging

from . import comfy_adapter
from .audio import MTVDemixStems, MTVEncodeWav2Vec, MTVLoadAudio, MTVStemsFromAudio
from .conditioning import MTVApply, MTVSceneTransition, MTVTextEncode
from .loaders import MTVDemixerLoader, MTVLoraLoader, MTVModelLoader, MTVVAEAndT5Loader, MTVWav2VecLoader
from .sampling import MTVChainSegments, MTVDecode, MTVSampler, MTVStepCache

# The name every node's title and menu carries: "MTV" alone is also MTV-Crafter's (a pose-animation pack), and
# searching for it finds both packs' nodes mixed. Node ids (the keys) never change: saved workflows store them.
PACK_NAME = "MTV audio-sync"
_NODES = {
    "MTVModelLoader": (MTVModelLoader, "Model Loader"),
    "MTVLoraLoader": (MTVLoraLoader, "LoRA Loader"),
    "MTVVAEAndT5Loader": (MTVVAEAndT5Loader, "VAE + T5 Loader"),
    "MTVWav2VecLoader": (MTVWav2VecLoader, "wav2vec2 Loader"),
    "MTVDemixerLoader": (MTVDemixerLoader, "Demixer Loader"),
    "MTVLoadAudio": (MTVLoadAudio, "Load Audio"),
    "MTVDemixStems": (MTVDemixStems, "Demix Stems"),
    "MTVStemsFromAudio": (MTVStemsFromAudio, "Stems From Audio"),
    "MTVEncodeWav2Vec": (MTVEncodeWav2Vec, "Encode wav2vec"),
    "MTVTextEncode": (MTVTextEncode, "Text Encode"),
    "MTVSceneTransition": (MTVSceneTransition, "Scene Transition"),
    "MTVApply": (MTVApply, "MST-ControlNet Apply"),
    "MTVStepCache": (MTVStepCache, "Step Cache"),
    "MTVSampler": (MTVSampler, "Sampler"),
    "MTVChainSegments": (MTVChainSegments, "Chain Segments"),
    "MTVDecode": (MTVDecode, "Decode"),
}
# node id -> (python package it needs, what to install)
_OPTIONAL = {
    "MTVDemixerLoader": ("demucs", "pip install demucs (no torchaudio needed)"),
}


def _available(node_id: str) -> bool:
    if node_id not in _OPTIONAL:
        return True
    package, hint = _OPTIONAL[node_id]
    if importlib.util.find_spec(package) is not None:
        return True
    logging.warning("[MTV] node %s is disabled: the package '%s' is missing; %s", node_id, package, hint)
    return False


comfy_adapter.register_model_folders()
comfy_adapter.install_example_inputs_on_first_request()
comfy_adapter.list_demo_workflow_first()
NODE_CLASS_MAPPINGS = {node_id: cls for node_id, (cls, _) in _NODES.items() if _available(node_id)}
NODE_DISPLAY_NAME_MAPPINGS = {node_id: f"{PACK_NAME} · {name}" for node_id, (_, name) in _NODES.items()
                              if node_id in NODE_CLASS_MAPPINGS}
