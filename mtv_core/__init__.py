"""mtv_core: the MTV model, audio front-end, sampler and kernels. Knows nothing of ComfyUI or the trainer.

Importing this package is cheap: submodules load torch, diffusers and friends only when used.
"""

from .errors import AudioInputError, ConfigError, GenerationError, ModelFileError, MTVError

__version__ = "0.1.0"
__all__ = ["MTVError", "ConfigError", "ModelFileError", "AudioInputError", "GenerationError"]
