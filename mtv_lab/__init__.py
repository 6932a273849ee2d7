"""The lab beside the library: a synthetic audio-visual world with exact ground truth (`mtv_lab.world`) and the
sync evaluation that scores generated videos against it (`mtv_lab.evaluation`). It needs the `eval` extra
(OpenCV, matplotlib), which the library and the ComfyUI pack never import.

    python -m mtv_lab world --out DIR        python -m mtv_lab evaluate --world DIR --videos NAME=DIR --out REPORT
"""
