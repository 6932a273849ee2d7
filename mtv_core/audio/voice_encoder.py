"""resemblyzer's speaker encoder, rebuilt: 16 kHz speech -> a unit-length 256-number voice embedding, close for
the same voice and further apart for different ones. Only the weights come from the resemblyzer package (its
`pretrained.pt`): importing resemblyzer itself goes through webrtcvad, which needs `pkg_resources`, gone from
recent setuptools. The input is resemblyzer's: a mel power spectrogram (not its log) of speech at -30 dBFS.
"""

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

RATE = 16000
MEL_BANDS, FFT, HOP = 40, 400, 160  # 25 ms windows every 10 ms
TRAINED_LOUDNESS_DBFS = -30
HIDDEN, LAYERS = 256, 3


class VoiceEncoder(nn.Module):
    """40 mel bands -> 3-layer LSTM -> linear -> ReLU -> unit length, on the LSTM's last step."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(MEL_BANDS, HIDDEN, LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, HIDDEN)

    @classmethod
    def from_file(cls, path: Path) -> "VoiceEncoder":
        """Reads resemblyzer's `pretrained.pt` (tensors only) onto the CPU."""
        saved = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
        encoder = cls()
        encoder.load_state_dict({name: value for name, value in saved.items() if name.startswith(("lstm.", "linear."))})
        return encoder.eval()

    def forward(self, mels: list) -> torch.Tensor:
        """[len(mels), 256] embeddings of mel spectrograms ([frames, 40] each) of any lengths."""
        lengths = torch.tensor([len(mel) for mel in mels])
        packed = nn.utils.rnn.pack_padded_sequence(nn.utils.rnn.pad_sequence(mels, batch_first=True), lengths,
                                                   batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        embedding = torch.relu(self.linear(hidden[-1]))
        return embedding / embedding.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def embed(self, pieces: list, batch: int = 64) -> np.ndarray:
        """[len(pieces), 256] embeddings of 16 kHz mono pieces of speech (1-D tensors)."""
        mels = [mel_power(at_trained_loudness(piece)) for piece in pieces]
        with torch.inference_mode():
            return torch.cat([self(mels[first:first + batch]) for first in range(0, len(mels), batch)]).numpy()


def at_trained_loudness(samples: torch.Tensor) -> torch.Tensor:
    """Speech scaled to the RMS level the encoder was trained on: it hears power, so level changes its answer."""
    rms = samples.pow(2).mean().sqrt()
    return samples * (10 ** (TRAINED_LOUDNESS_DBFS / 20) / rms) if rms > 0 else samples


def mel_power(samples: torch.Tensor) -> torch.Tensor:
    """[frames, 40] mel power spectrogram: Hann-windowed frames, Slaney mel bands from 0 to 8 kHz."""
    spectrum = torch.stft(samples, FFT, HOP, window=torch.hann_window(FFT), center=True, pad_mode="constant",
                          return_complex=True).abs().pow(2)
    return (mel_filters() @ spectrum).T


@lru_cache(maxsize=1)
def mel_filters() -> torch.Tensor:
    """[40, 201] triangles between points spaced evenly on the Slaney mel scale, each scaled to unit area."""
    points = _mel_to_hz(np.linspace(0, _hz_to_mel(RATE / 2), MEL_BANDS + 2))
    frequencies = np.linspace(0, RATE / 2, FFT // 2 + 1)
    rising = (frequencies[None] - points[:-2, None]) / (points[1:-1] - points[:-2])[:, None]
    falling = (points[2:, None] - frequencies[None]) / (points[2:] - points[1:-1])[:, None]
    triangles = np.maximum(0, np.minimum(rising, falling)) * (2 / (points[2:] - points[:-2]))[:, None]
    return torch.from_numpy(triangles).float()


# The Slaney mel scale: linear to 1 kHz, logarithmic above.
_LINEAR_STEP, _LOG_START, _LOG_STEP = 200 / 3, 1000.0, np.log(6.4) / 27


def _hz_to_mel(hz):
    hz = np.asarray(hz, dtype=float)
    above = _LOG_START / _LINEAR_STEP + np.log(np.maximum(hz, _LOG_START) / _LOG_START) / _LOG_STEP
    return np.where(hz < _LOG_START, hz / _LINEAR_STEP, above)


def _mel_to_hz(mel):
    mel = np.asarray(mel, dtype=float)
    edge = _LOG_START / _LINEAR_STEP
    return np.where(mel < edge, mel * _LINEAR_STEP, _LOG_START * np.exp(_LOG_STEP * (mel - edge)))
