"""mtv_core: the MTV model, audio front-end, sampler and kernels. Knows nothing of ComfyUI or the trainer.

Importing this package is cheap: submodules load torch, diffusers and friends only when used.
"""

from .errors import AudioInputError, ConfigError, GenerationError, ModelFileError, MTVError

DISTRIBUTION = "comfyui-mtv"


def _version() -> str:
    """pyproject.toml's version, the one place it is written: read from the file in a source folder (ComfyUI loads
    the pack from its folder, not installed), else from the installed distribution's metadata."""
    import re
    from importlib import metadata
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8") if pyproject.is_file() else ""
    found = re.search(r'^version = "([^"]+)"', text, re.MULTILINE)
    if found and re.search(rf'^name = "{DISTRIBUTION}"', text, re.MULTILINE):
        return found.group(1)
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


__version__ = _version()
__all__ = ["MTVError", "ConfigError", "ModelFileError", "AudioInputError", "GenerationError"]
