"""Writes the shipped workflows (workflow_graphs.py) in both formats: UI (`workflows/<title>.json`, which ComfyUI's
template browser lists under the file name, so the file name is the title) and API (`workflows/api/<name>.json`,
for `POST /prompt` and `python -m mtv_core queue`), laid out by workflow_layout.py; and the official workflows'
example inputs (`workflows/inputs/`: a soundtrack and a keyframe made from the built-in demo's examples), which
Load Audio lists and puts in ComfyUI's input folder. A workflow whose title changed leaves no stale file: its old
UI file goes and its thumbnail takes the new title.

Run `python workflows/build.py` after changing a graph or a node's inputs; tests/nodes checks that the two formats
describe the same graph, that every node and input exists and that every saved video has its soundtrack.
"""

from __future__ import annotations

import json
import sys
import wave
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from workflow_graphs import AUDIO_FILE, KEYFRAME_FILE, WORKFLOWS  # noqa: E402
from workflow_layout import to_api, to_ui  # noqa: E402

from mtv_core import demo  # noqa: E402
from nodes.comfy_adapter import EXAMPLE_INPUTS  # noqa: E402


def write_example_inputs(folder: Path = EXAMPLE_INPUTS) -> None:
    """The official workflows' example inputs, made from the built-in demo's examples (small: about 200 kB):
    mtv_example.wav, the two examples' soundtracks one after the other (6 s, 16 kHz, 16-bit: speech, effects and
    music), and mtv_keyframe.png, the talking-face example's first frame."""
    def mix(name: str) -> np.ndarray:
        return sum(_samples(path) for path in demo.example_stems(name).values())

    sound = np.concatenate([mix(name) for name in demo.EXAMPLES])
    sound = sound / max(1.0, float(np.abs(sound).max()) / 0.9)
    folder.mkdir(parents=True, exist_ok=True)
    with wave.open(str(folder / AUDIO_FILE), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(EXAMPLE_RATE)
        out.writeframes((sound * 32767).round().astype("<i2").tobytes())
    with av.open(str(demo.example_audio())) as clip:
        next(clip.decode(video=0)).to_image().save(folder / KEYFRAME_FILE, optimize=True)


EXAMPLE_RATE = 16000


def _samples(path: Path) -> np.ndarray:
    """A demo stem's samples: mono at EXAMPLE_RATE, as tools/build_demo.py writes them."""
    with av.open(str(path)) as sound:
        stream = sound.streams.audio[0]
        if (stream.rate, stream.channels) != (EXAMPLE_RATE, 1):
            raise SystemExit(f"{path} has {stream.channels} channel(s) at {stream.rate} Hz, not one at {EXAMPLE_RATE}: "
                             "rebuild the demo with tools/build_demo.py")
        return np.concatenate([frame.to_ndarray().reshape(-1) for frame in sound.decode(audio=0)]).astype(np.float64)


def retire(stale: Path, titles: dict[str, str]) -> None:
    """Remove a UI file no workflow writes any more; a renamed workflow's thumbnail takes its new title."""
    renamed = titles.get(json.loads(stale.read_text()).get("extra", {}).get("mtv_api"))
    thumbnail, target = stale.with_suffix(".jpg"), HERE / f"{renamed}.jpg"
    if renamed and thumbnail.exists() and not target.exists():
        thumbnail.rename(target)
    thumbnail.unlink(missing_ok=True)
    stale.unlink()
    print(f"removed workflows/{stale.name}" + (f" (now {renamed!r})" if renamed else ""))


def main() -> None:
    (HERE / "api").mkdir(exist_ok=True)
    titles = {workflow.name: workflow.title for workflow in WORKFLOWS}
    for stale in sorted(p for p in HERE.glob("*.json") if p.stem not in titles.values()):
        retire(stale, titles)
    for stale in sorted(p for p in (HERE / "api").glob("*.json") if p.stem not in titles):
        stale.unlink()
        print(f"removed workflows/api/{stale.name}")
    for workflow in WORKFLOWS:
        (HERE / f"{workflow.title}.json").write_text(json.dumps(to_ui(workflow), indent=1) + "\n")
        (HERE / "api" / f"{workflow.name}.json").write_text(json.dumps(to_api(workflow.graph), indent=1) + "\n")
        print(f"wrote workflows/{workflow.title}.json and workflows/api/{workflow.name}.json")
    write_example_inputs()
    print(f"wrote {EXAMPLE_INPUTS.relative_to(HERE.parent)}/")


if __name__ == "__main__":
    main()
