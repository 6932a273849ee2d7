import subprocess
import sys
from pathlib import Path

import av
import numpy as np

TWO_HOURS = 2 * 3600
RATE = 8000

MEASURE = """
import resource, sys
from mtv_core.audio import LevelMeter, iter_audio_blocks
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
meter, total = LevelMeter(16000), 0
for block in iter_audio_blocks(sys.argv[1], sample_rate=16000):
    meter.update(block)
    total += block.shape[1]
report = meter.report()
print(total, round(report.rms_dbfs, 2), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def _write_two_hours(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=RATE, layout="mono")
        block = np.full((1, RATE * 60), 3277, dtype=np.int16)  # a constant -20 dBFS level
        for minute in range(TWO_HOURS // 60):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, minute * RATE * 60
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_two_hour_file_streams_in_bounded_memory(tmp_path):
    path = tmp_path / "two-hours.wav"
    _write_two_hours(path)
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, cwd=root, check=True)
    total, rms_dbfs, grown_mib = result.stdout.split()
    assert int(total) == TWO_HOURS * 16000
    assert abs(float(rms_dbfs) - (-20.0)) < 0.05
    # The whole file resampled to 16 kHz as float32 would be 440 MiB; streaming stays far below.
    assert int(grown_mib) < 120
