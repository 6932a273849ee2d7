"""The generation pipeline: text, VAE, samplers, guidance, segment chaining, memory options, video out.

Submodules import torch and diffusers; import them directly (e.g. `mtv_core.pipeline.generate`).
"""
