"""Network-free metrics for audio-synchronised video: AV-Align (TempoTokens) and the measures the
synthetic world (`mtv_lab.world`) makes exact. `evaluate_clip` scores one decoded clip in-process."""

from .av_align import av_align, av_align_score
from .measures import METRICS, evaluate_clip

__all__ = ["METRICS", "av_align", "av_align_score", "evaluate_clip"]
