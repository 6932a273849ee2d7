"""ComfyUI nodes: thin wrappers over mtv_core, defined with the classic node API.

Importing this package does no heavy work: diffusers, transformers and the models load when a node runs.
A node whose optional dependency is missing is left out, with a message saying what to install.
"""

import importlib.util
import logging

from .audio import MTVDemixStems, MTVEncodeWav2Vec, MTVLoadAudio, MTVStemsFromAudio
from .comfy_adapter import PACK_NAME
from .conditioning import MTVApply, MTVSceneTransition, MTVTextEncode
from .folders import register_model_folders
from .loaders import MTVDemixerLoader, MTVLoraLoader, MTVModelLoader, MTVVAEAndT5Loader, MTVWav2VecLoader
from .sampling import MTVChainSegments, MTVDecode, MTVSampler, MTVStepCache

# Node ids (the keys) never change: saved workflows store them. Searching for the pack's name in ComfyUI finds its
# nodes and no other pack's.
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


# The one thing done at import, in memory only: ComfyUI's folder_paths learns of the demucs model folder, as packs
# add theirs, so its model API lists it. Example inputs are copied when Load Audio first lists its files.
register_model_folders()
NODE_CLASS_MAPPINGS = {node_id: cls for node_id, (cls, _) in _NODES.items() if _available(node_id)}
NODE_DISPLAY_NAME_MAPPINGS = {node_id: f"{PACK_NAME} · {name}" for node_id, (_, name) in _NODES.items()
                              if node_id in NODE_CLASS_MAPPINGS}
