"""Drive a (headless) ComfyUI server: queue API-format workflows, follow their progress, download what they saved.

Standard library only (urllib, a small websocket reader): a headless box needs nothing beyond this package. The
server is not trusted: its answers are checked, downloads are streamed to disk with a size limit, file names it
gives cannot leave the output folder or replace a file, and one deadline bounds the whole run.
"""

from .client import ComfyClient
from .workflow import apply_override, describe_failure, describe_refusal, load_api_workflow

__all__ = ["ComfyClient", "apply_override", "describe_failure", "describe_refusal", "load_api_workflow"]
