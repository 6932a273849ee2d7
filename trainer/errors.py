"""The trainer's errors: part of the library's hierarchy, so the CLI treats them alike."""

from mtv_core.errors import MTVError


class TrainerError(MTVError):
    """A dataset, option or run directory that the trainer cannot work with as given."""


class CheckpointWriteError(TrainerError):
    """Saving a checkpoint failed (e.g. disk full); the previous checkpoint is untouched."""
