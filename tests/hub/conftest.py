"""The stand-in hub on 127.0.0.1, with HF_ENDPOINT pointing at it and the Hugging Face home in the test's folder."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "model"))  # the official-layout checkpoint builder
from hub_stand_in import StandInHub


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import huggingface_hub.constants

    stand_in = StandInHub()
    monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the suite may run with HF_HUB_OFFLINE=1
    yield stand_in
    stand_in.close()
