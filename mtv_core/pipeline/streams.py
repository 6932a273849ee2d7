"""The rules about which audio streams a model takes and how strongly each drives it, kept once for every caller.
Callers word the fix in their own terms (flags, node inputs) through the `give_second` and `drop_second` hints."""

from ..errors import ConfigError
from ..spec import SPEECH, SPEECH2

GIVE_SECOND = f"give a second speaker as the {SPEECH2!r} stream (silence if Person2 never speaks)"
DROP_SECOND = f"use a two-speaker (multi) model, or leave the {SPEECH2!r} stream out"


class StreamsMismatch(ConfigError):
    """The streams given do not fit the model: `missing` it needs and were not given, `extra` it does not take."""

    def __init__(self, message: str, missing: tuple = (), extra: tuple = ()):
        super().__init__(message)
        self.missing, self.extra = missing, extra


def stream_strengths(stem_strengths: dict, streams) -> dict:
    """{stream: strength} for each of `streams`, from the stems' strengths (1 where none is given); the second
    speaker follows the speech strength."""
    return {name: stem_strengths.get(SPEECH if name == SPEECH2 else name, 1.0) for name in streams}


def check_streams_fit(given, model_streams, variant: str, give_second: str = GIVE_SECOND,
                      drop_second: str = DROP_SECOND) -> None:
    """Refuse streams that do not fit the model: a second speaker for a single-speaker model, or a two-speaker
    model without one (or without any other stream it takes)."""
    given, model_streams = set(given), tuple(model_streams)
    if SPEECH2 in given and SPEECH2 not in model_streams:
        raise StreamsMismatch(f"a second speaker (the {SPEECH2!r} stream) was given but the {variant} model is a "
                              f"single-speaker model; {drop_second}", extra=(SPEECH2,))
    missing = tuple(name for name in model_streams if name not in given)
    if missing:
        fix = give_second if missing == (SPEECH2,) else f"give all of {list(model_streams)}"
        raise StreamsMismatch(f"the {variant} model takes the streams {list(model_streams)} but {list(missing)} "
                              f"were not given; {fix}", missing=missing)
