"""Values checked before any work starts, and stops (SIGTERM, Ctrl-C, SIGKILL) that leave nothing half-written."""

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mtv_core import testing
from mtv_core.audio import Waveform, save_wav
from mtv_core.errors import ConfigError, MTVError

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "mtv_core", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.mark.parametrize("args, words", [
    (["--vae-tile", "0"], "VAE tile 0 is out of range"),
    (["--vae-tile", "-3"], "VAE tile -3 is out of range"),
    (["--device", "bogus"], "device 'bogus' is not a device"),
    (["--block-swap", "-1"], "block swap -1 must be a whole number >= 0"),
    (["--steps", "0"], "steps 0 is out of range"),
    (["--cache", "teacache"], "step cache 'teacache' is unknown; use one of fbc, taylorseer"),
    (["--cache", "fbc:7"], "threshold (relative change of the first block's residual that forces a full step) must be"),
])
def test_generate_refuses_bad_values_before_loading_anything(tmp_path, args, words):
    began = time.monotonic()
    result = cli("generate", "--example", "--out", str(tmp_path / "out.mp4"), *args)
    assert result.returncode == 1 and words in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert time.monotonic() - began < 60 and not list(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_asking_for_a_gpu_that_is_not_there_is_one_line():
    result = cli("generate", "--example", "--out", "x.mp4", "--device", "cuda")
    assert result.returncode == 1 and "no CUDA GPU" in result.stderr


@pytest.mark.parametrize("fps", ["nan", "1e9", "25", "0", "-24"])
def test_features_frame_rate_must_be_the_models(tmp_path, fps):
    result = cli("features", str(tmp_path), "--wav2vec", str(tmp_path), "--out", str(tmp_path / "f.safetensors"), "--fps", fps)
    assert result.returncode == 1 and "--fps" in result.stderr and "24" in result.stderr, result.stderr


@pytest.mark.parametrize("size", [("30", "45"), ("0", "-16"), ("480", "721")])
def test_prepare_size_must_be_positive_multiples_of_16(tmp_path, size):
    result = subprocess.run([sys.executable, "-m", "trainer", "prepare", "--clips", str(tmp_path), "--out", str(tmp_path / "data"),
                             "--wav2vec", str(tmp_path), "--size", *size], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 1 and "not two positive multiples of 16" in result.stderr, result.stderr


def test_prepare_with_no_usable_clip_fails_with_the_reasons(tmp_path):
    from trainer.prepare import PrepareOptions, prepare_dataset

    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "broken.mp4").write_bytes(b"not a video at all")
    testing.save_tiny_wav2vec2(tmp_path / "w2v")
    with pytest.raises(MTVError, match="(?s)no usable clip: every one of the 1 clips was skipped.*skipped broken.mp4: unreadable video"):
        prepare_dataset(PrepareOptions(clips=clips, out=tmp_path / "data", wav2vec=tmp_path / "w2v"))


def test_chain_segments_work_folder_stays_under_the_output_folder(tmp_path, monkeypatch):
    from nodes import folders

    monkeypatch.setenv("MTV_OUTPUT_DIR", str(tmp_path / "output"))
    for name in ("../../elsewhere", "/tmp/abs", "jobs/../../x"):
        with pytest.raises(ConfigError, match="output folder"):
            folders.output_folder(name)
    assert folders.output_folder("mtv_segments/job") == tmp_path / "output" / "mtv_segments" / "job"


# -- stops ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def long_input(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stop")
    rate, seconds = 16000, 90
    t = np.arange(rate * seconds) / rate
    save_wav(folder / "long.wav", Waveform(torch.from_numpy((0.3 * np.sin(2 * math.pi * 220 * t)).astype(np.float32))[None], rate))
    testing.save_tiny_demixer(folder / "demixer.safetensors")
    return folder


def _as_in_a_terminal():
    """Ctrl-C's default action, as in a terminal: a run started in the background (`cmd &`, as CI may be) inherits
    SIGINT ignored, and Python then leaves it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _demix(folder: Path, out: Path):
    return subprocess.Popen([sys.executable, "-m", "mtv_core", "demix", str(folder / "long.wav"), "--model",
                             str(folder / "demixer.safetensors"), "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_in_a_terminal)


def _wait_for_temp_files(out: Path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if list(out.glob(".speech.wav.*.tmp")):
            return
        time.sleep(0.1)
    pytest.fail(f"demix wrote no temporary file within {timeout}s (exit {process.poll()})")


@pytest.mark.parametrize("stop, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_stopped_demix_removes_its_partial_files_and_says_so_in_one_line(long_input, tmp_path, stop, code, name):
    out = tmp_path / "stems"
    process = _demix(long_input, out)
    _wait_for_temp_files(out, process)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert f"stopped ({name})" in stderr and "Traceback" not in stderr
    assert list(out.iterdir()) == []


def test_partial_files_of_a_killed_demix_are_removed_at_the_next_start(long_input, tmp_path):
    out = tmp_path / "stems"
    process = _demix(long_input, out)
    _wait_for_temp_files(out, process)
    process.kill()
    process.wait()
    left = sorted(p.name for p in out.iterdir())
    assert any(name.startswith(".speech.wav.") for name in left)
    (out / "my_notes.txt").write_text("the user's own file")
    result = cli("demix", str(long_input / "long.wav"), "--model", str(long_input / "demixer.safetensors"), "--out",
                 str(out), "--duration", "2", timeout=300)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["effects.wav", "music.wav", "my_notes.txt", "report.json", "speech.wav"]
