"""A jobs file read as a stream of CSV rows, each with its line number; what is not plain one-line-a-row UTF-8 CSV
is refused with the line where its row begins."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from mtv_core.errors import ConfigError

MAX_LINE_BYTES = 2**20


def numbered_rows(handle, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every row of the open binary file `handle`, read one line at a time. Refused: a
    quote that never closes, text after a closing quote, a cell that runs over several lines, text that is not
    UTF-8, a line over MAX_LINE_BYTES."""
    reader = csv.reader(_text_lines(handle, path), strict=True)
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise ConfigError(_malformed(path, line, reader.line_num, error)) from None
        if reader.line_num > line or any("\n" in cell or "\r" in cell for cell in cells):
            raise ConfigError(f"{path} line {line}: a quoted cell runs over several lines (to line {reader.line_num}); "
                              "close the quote on the line it opens (a cell cannot hold a line break)")
        yield line, cells
        line = reader.line_num + 1


def _text_lines(handle, path: Path) -> Iterator[str]:
    """The file's lines as text, one at a time, so a byte that is not UTF-8 is refused on its line."""
    for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), 1):
        if len(raw) > MAX_LINE_BYTES:
            raise ConfigError(f"{path} line {number}: longer than {MAX_LINE_BYTES} bytes; a job takes one short line")
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError(f"{path} line {number}: not UTF-8 text ({error}); save the file as UTF-8") from None


def _malformed(path: Path, line: int, last_line: int, error: csv.Error) -> str:
    if str(error) == "unexpected end of data":
        return (f"{path} line {line}: a quote opened on this line never closes (the file ends first); close it, "
                "and write a quote inside a quoted cell as \"\"")
    if last_line > line:
        return (f"{path} line {line}: a quoted cell runs over several lines (to line {last_line}: {error}); close "
                "the quote on the line it opens")
    return (f"{path} line {line}: not valid CSV ({error}); quote a whole cell (\"a, b\") and write a quote inside "
            "it as \"\"")
