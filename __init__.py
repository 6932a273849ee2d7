"""ComfyUI entry point: ComfyUI imports this file by path from custom_nodes/<pack>/, as a package."""

import os
import sys

# mtv_core sits beside this file; make it importable when the pack is not pip-installed.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

if __package__:  # pytest imports this file as a bare module when the clone's folder name is not an identifier
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
else:
    from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
