"""ComfyUI nodes: thin wrappers over mtv_core. Defined with the classic node API."""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
