"""MTV models, config-driven, one model per file (diffusers style)."""

from .configs import MODEL_CONFIGS, backbone_config, mtv_config
from .transformer_mtv import MTVTransformer3DModel

__all__ = ["MTVTransformer3DModel", "MODEL_CONFIGS", "mtv_config", "backbone_config"]
