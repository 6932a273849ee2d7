"""ComfyUI's progress bar, latent previews and Cancel button, as the plain callbacks mtv_core takes. Outside ComfyUI
they do nothing. comfy.* is imported when a node runs: the pack is also imported where ComfyUI is not."""

from __future__ import annotations

from PIL import Image


def progress_callback(total: int):
    """(step, total) -> None that drives ComfyUI's progress bar (which also checks for interrupts)."""
    try:
        from comfy.utils import ProgressBar
    except ImportError:
        return lambda step, total_steps=None: None
    bar = ProgressBar(total)
    return lambda step, total_steps=None: bar.update_absolute(step, total_steps)


def preview_size() -> int | None:
    """The largest preview ComfyUI sends (its --preview-size), or None where it shows none (--preview-method none,
    its default) or outside ComfyUI. auto, latent2rgb and taesd all get the VAE's latent -> RGB projection: there is
    no tiny decoder for CogVideoX latents."""
    try:
        from comfy.cli_args import LatentPreviewMethod, args
    except ImportError:
        return None
    return None if args.preview_method == LatentPreviewMethod.NoPreviews else args.preview_size


class NodeProgress:
    """The running node's progress bar, moved by sampling (steps; with a preview image after each when previews are
    on) and by decoding (each segment's decoder slices, the bar's max switching to them while they run)."""

    def __init__(self, bar, latent_preview=None, size: int | None = None):
        self.bar, self.latent_preview, self.size = bar, latent_preview, size
        self.previewed = None  # the step whose preview already moved the bar

    def sampling(self, step, total=None):
        if step != self.previewed:
            self.bar.update_absolute(step, total)

    def preview(self, step, total, latents):
        self.previewed = step
        self.bar.update_absolute(step, total, ("JPEG", Image.fromarray(self.latent_preview.image(latents)), self.size))

    def decoding(self, done, total):
        self.previewed = None
        self.bar.update_absolute(done, total)

    def listeners(self) -> dict:
        """RenderSession's progress, preview and decode_progress."""
        shows_previews = self.latent_preview is not None and self.size is not None
        return {"progress": self.sampling, "preview": self.preview if shows_previews else None,
                "decode_progress": self.decoding}


def sampling_listeners(total: int, latent_preview=None) -> dict:
    """progress, preview and decode_progress for a RenderSession on ComfyUI's progress bar; previews only where the
    server shows them and the VAE has a latent -> RGB projection (mtv_core.pipeline.preview). Outside ComfyUI: none."""
    try:
        from comfy.utils import ProgressBar
    except ImportError:
        return {}
    return NodeProgress(ProgressBar(total), latent_preview, preview_size()).listeners()


def interrupt_check():
    """Raises ComfyUI's own interruption exception when the user pressed Cancel."""
    try:
        from comfy.model_management import throw_exception_if_processing_interrupted
    except ImportError:
        return lambda: False

    def check():
        throw_exception_if_processing_interrupted()
        return False

    return check


def progress_and_interrupt(total: int):
    """One (done, total) callback that updates the progress bar and stops on Cancel."""
    interrupt, progress = interrupt_check(), progress_callback(total)

    def report(done, total_done=None):
        interrupt()
        progress(done, total_done)

    return report
