"""Small files that lie: malformed safetensors headers and configs that ask for far more memory than they hold."""

import json
import struct
from pathlib import Path


def raw_safetensors(path: Path, header, data: bytes = b"") -> Path:
    encoded = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)
    return path


def one_tensor(metadata=None, **entry) -> dict:
    header = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16], **entry}}
    if metadata is not None:
        header["__metadata__"] = metadata
    return header


MALFORMED = {  # name -> (header, data, words the error must contain)
    "list_header": ([1, 2, 3], b"", "header is a list"),
    "no_offsets": ({"w": {"dtype": "F32", "shape": [2, 2]}}, b"\0" * 16, "data_offsets"),
    "overlap": ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                 "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, b"\0" * 24, "overlaps"),
    "unknown_dtype": (one_tensor(dtype="F128"), b"\0" * 16, "dtype"),
    "shape_lies": (one_tensor(shape=[1000, 1000]), b"\0" * 16, "do not hold"),
    "negative_shape": (one_tensor(shape=[-1, 2]), b"\0" * 16, "shape"),
    "past_the_end": (one_tensor(data_offsets=[0, 16_000_000], shape=[4_000_000]), b"\0" * 16, "truncated"),
    "metadata_list": ({"__metadata__": ["x"], **one_tensor()}, b"\0" * 16, "metadata is not a mapping"),
    "config_not_json": (one_tensor(metadata={"config": "{not json", "format": "mtv-audio-features"}), b"\0" * 16, "not JSON"),
    "header_not_json": (b"{this is not json}", b"", "header is not JSON"),
}
