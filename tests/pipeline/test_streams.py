import pytest

from mtv_core.pipeline.streams import StreamsMismatch, check_streams_fit, stream_strengths
from mtv_core.spec import STEMS, STREAMS


def test_the_second_speaker_follows_the_speech_strength():
    strengths = stream_strengths({"speech": 0.5, "music": 0.0}, STREAMS)
    assert strengths == {"speech": 0.5, "speech2": 0.5, "effects": 1.0, "music": 0.0}
    assert stream_strengths({"speech": 0.5}, STEMS) == {"speech": 0.5, "effects": 1.0, "music": 1.0}


def test_streams_that_fit_pass():
    check_streams_fit(STEMS, STEMS, "single")
    check_streams_fit(STREAMS, STREAMS, "multi")


def test_a_second_speaker_for_a_single_speaker_model_is_refused_with_the_callers_fix():
    with pytest.raises(StreamsMismatch, match="the single model is a single-speaker model; drop it") as caught:
        check_streams_fit(STREAMS, STEMS, "single", drop_second="drop it")
    assert caught.value.extra == ("speech2",) and caught.value.missing == ()


def test_a_two_speaker_model_without_a_second_speaker_is_refused():
    with pytest.raises(StreamsMismatch, match=r"\['speech2'\] were not given; give a second speaker") as caught:
        check_streams_fit(STEMS, STREAMS, "multi")
    assert caught.value.missing == ("speech2",) and caught.value.extra == ()
    with pytest.raises(StreamsMismatch, match=r"\['effects'\] were not given; give all of"):
        check_streams_fit(("speech", "music"), STEMS, "single")
