"""MTV trainer: `python -m trainer prepare ...` builds a dataset, `python -m trainer --stage NAME ...` trains."""

from .errors import CheckpointWriteError, TrainerError
from .stages import STAGE_ORDER, SUBSETS

__all__ = ["TrainerError", "CheckpointWriteError", "STAGE_ORDER", "SUBSETS"]
