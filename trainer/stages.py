"""The MTV curriculum: which DEMIX subset each stage trains on, in order (paper, stages 1-5)."""

from mtv_core.spec import CURRICULUM

from .errors import TrainerError

SUBSETS = CURRICULUM
# Stage names equal the subset they train on.
STAGE_ORDER = SUBSETS
ALL = "all"


def stage_subset(stage: str) -> str:
    if stage not in STAGE_ORDER:
        raise TrainerError(f"unknown stage {stage!r}; choose one of {', '.join(STAGE_ORDER)} or {ALL!r}")
    return stage


def stages_to_run(stage: str) -> list[str]:
    """`all` runs the whole curriculum; a name runs that stage alone."""
    return list(STAGE_ORDER) if stage == ALL else [stage_subset(stage)]


def previous_stage(stage: str) -> str | None:
    index = STAGE_ORDER.index(stage_subset(stage))
    return STAGE_ORDER[index - 1] if index else None
