"""Known test signals and tiny configs shared by the audio tests."""

import math

import numpy as np


def tone(frequency, seconds, sample_rate, amplitude=0.5, channels=1):
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return np.repeat((amplitude * np.sin(2 * np.pi * frequency * t))[None], channels, axis=0).astype(np.float32)


def clicks(times, seconds, sample_rate, amplitude=0.9):
    signal = np.zeros((1, round(seconds * sample_rate)), dtype=np.float32)
    for time in times:
        signal[0, round(time * sample_rate)] = amplitude
    return signal


def dominant_frequency(samples, sample_rate):
    spectrum = np.abs(np.fft.rfft(np.asarray(samples, dtype=np.float64) * np.hanning(len(samples))))
    return np.fft.rfftfreq(len(samples), 1 / sample_rate)[int(np.argmax(spectrum))]


def db(value):
    return 20 * math.log10(value)


def tiny_wav2vec2_config(**overrides):
    from transformers import Wav2Vec2Config

    options = dict(hidden_size=32, num_hidden_layers=12, intermediate_size=37, num_attention_heads=2, conv_dim=(16,) * 7,
                   num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    options.update(overrides)
    return Wav2Vec2Config(**options)
