"""Inputs and outputs of the ComfyUI core nodes the shipped workflows use, recorded from Comfy-Org/ComfyUI 0.3.64
(comfy_extras/nodes_video.py, comfy_extras/nodes_audio.py, nodes.py). Widgets in order; sockets by name.
`ui_only` nodes exist in the UI format alone (the frontend leaves them out of API prompts)."""

CORE_NODES = {
    "CreateVideo": {"inputs": {"images": "IMAGE", "fps": "FLOAT", "audio": "AUDIO"}, "optional": ["audio"], "widgets": ["fps"], "outputs": [["VIDEO", "VIDEO"]]},
    "SaveVideo": {"inputs": {"video": "VIDEO", "filename_prefix": "STRING", "format": "COMBO", "codec": "COMBO"}, "optional": [], "widgets": ["filename_prefix", "format", "codec"], "combo_options": {"format": ["auto", "mp4"], "codec": ["auto", "h264"]}, "outputs": []},
    "LoadImage": {"inputs": {"image": "COMBO"}, "optional": [], "widgets": ["image"], "ui_extra_widget_values": ["image"], "outputs": [["IMAGE", "IMAGE"], ["MASK", "MASK"]]},
    "PreviewAudio": {"inputs": {"audio": "AUDIO"}, "optional": [], "widgets": [], "outputs": []},
    "CLIPLoader": {"inputs": {"clip_name": "COMBO", "type": "COMBO", "device": "COMBO"}, "optional": ["device"], "widgets": ["clip_name", "type", "device"], "combo_options": {"type": ["sd3"], "device": ["default", "cpu"]}, "outputs": [["CLIP", "CLIP"]]},
    "Note": {"inputs": {"text": "STRING"}, "optional": [], "widgets": ["text"], "outputs": [], "ui_only": True},
}
