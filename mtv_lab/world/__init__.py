"""A synthetic audio-visual world with exact ground truth: speech moves a mouth, effects make an object
hop, music sets the background mood, and the caption sets who and what is drawn."""

from .generate import load_truth, make_clip, spec_from_dict, truth_dict, world_clips, write_world
from .scene import KINDS, ClipSpec, WorldSettings, draw_frames

__all__ = ["KINDS", "ClipSpec", "WorldSettings", "load_truth", "make_clip", "draw_frames", "spec_from_dict", "truth_dict", "world_clips", "write_world"]
