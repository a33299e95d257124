"""Training data from CSV: a header row, numeric feature columns, one 0/1 target column.

Linear in the body's size: one pass of the csv module, rows converted to numpy in chunks.
Knows nothing of HTTP; raises the service's errors with the line and column at fault.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ..errors import MalformedCsv, PayloadTooLarge, ValidationFailed, validation_error
from .neuron import Matrix

_CHUNK_ROWS = 2048  # rows held as Python strings at once, before they become float64
_SHOWN_NAMES = 10
MAX_NAME_LENGTH = 200  # as for feature_names in a JSON body


@dataclass(frozen=True)
class Table:
    inputs: Matrix  # (rows, features)
    targets: Matrix  # (rows, 1), each 0.0 or 1.0
    feature_names: list[str]
    target_name: str


def parse_csv(body: bytes, target: str | None, max_rows: int, max_features: int) -> Table:
    """Read ``body``; ``target`` names the label column (None: the last column)."""
    if not body.strip():
        raise _empty()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedCsv(f"the body is not UTF-8 (byte {exc.start})") from None
    return _table(io.StringIO(text, newline=""), target, max_rows, max_features)


def read_csv(stream: IO[bytes], target: str | None, max_rows: int, max_features: int) -> Table:
    """parse_csv() of a binary stream, read a block at a time: the text is never held whole."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    lines = _Lines(text)
    try:
        return _table(lines, target, max_rows, max_features)
    except UnicodeDecodeError:
        # the decoder reads ahead a block: the line is where it was, not the byte at fault
        raise MalformedCsv(f"the body is not UTF-8 (near line {lines.count + 1})") from None
    finally:
        text.detach()


class _Lines:
    """A text stream's lines, counted, for the line a decoding error is on."""

    def __init__(self, text: io.TextIOWrapper) -> None:
        self._text, self.count = text, 0

    def __iter__(self) -> Iterator[str]:
        for line in self._text:
            self.count += 1
            yield line


def _table(lines: Iterable[str], target: str | None, max_rows: int, max_features: int) -> Table:
    reader = csv.reader(lines, strict=True)
    try:
        first = next((row for row in reader if "".join(row).strip()), None)
        if first is None:  # nothing but blank lines
            raise _empty()
        header = _header(first, max_features)
        column = _target_column(header, target)
        data = np.concatenate(list(_chunks(reader, max_rows, header, column)))
    except csv.Error as exc:
        raise MalformedCsv(f"line {reader.line_num}: {exc}") from None
    if len(data) == 0:
        raise _invalid(
            "the CSV holds no data rows", "rows", "send at least one row under the header"
        )
    labels = data[:, column]
    return Table(
        inputs=np.ascontiguousarray(np.delete(data, column, axis=1)),
        targets=labels.reshape(-1, 1).copy(),
        feature_names=[name for i, name in enumerate(header) if i != column],
        target_name=header[column],
    )


def _empty() -> MalformedCsv:
    return MalformedCsv("the body is empty: send a header row, then one row per example")


def _header(cells: list[str], max_features: int) -> list[str]:
    names = [cell.strip() for cell in cells]
    if len(names) < 2:
        raise _invalid(
            "the CSV needs a header row",
            "header",
            "the first row must name at least one feature column and the target column",
        )
    if all(_is_number(name) for name in names):
        raise _invalid(
            "the CSV needs a header row",
            "header",
            "the first row holds only numbers: it must name the columns",
        )
    if "" in names:
        raise _invalid("empty column name", "header", f"column {names.index('') + 1} has no name")
    long = next((name for name in names if len(name) > MAX_NAME_LENGTH), None)
    if long is not None:
        raise _invalid(
            "column name too long",
            "header",
            f"{long[:40]!r}... is longer than {MAX_NAME_LENGTH} characters",
        )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _invalid("duplicate column name", "header", f"{name!r} names two columns")
        seen.add(name)
    if len(names) - 1 > max_features:
        raise _invalid(
            "too many features", "header", f"at most {max_features} feature columns are allowed"
        )
    return names


def _target_column(header: list[str], target: str | None) -> int:
    if target is None:
        return len(header) - 1
    if target not in header:
        shown = ", ".join(repr(name) for name in header[:_SHOWN_NAMES])
        more = ", ..." if len(header) > _SHOWN_NAMES else ""
        raise _invalid(
            "unknown target column",
            "target",
            f"no column is named {target!r}; the header has {shown}{more}",
        )
    return header.index(target)


def _chunks(reader: Any, max_rows: int, header: list[str], target: int) -> Iterator[Matrix]:
    """The data rows as float64 blocks; blank lines are skipped. ``reader``: a csv.reader."""
    width = len(header)
    rows: list[list[str]] = []
    lines: list[int] = []  # each row's line in the body, for messages
    count = 0
    yield np.empty((0, width))
    for row in reader:
        if not row:
            continue
        count += 1
        if count > max_rows:
            raise PayloadTooLarge(f"at most {max_rows} training rows are allowed")
        if len(row) != width:
            raise MalformedCsv(
                f"line {reader.line_num} has {len(row)} fields; the header has {width}"
            )
        rows.append(row)
        lines.append(reader.line_num)
        if len(rows) == _CHUNK_ROWS:
            yield _numbers(rows, lines, header, target)
            rows, lines = [], []
    if rows:
        yield _numbers(rows, lines, header, target)


def _numbers(rows: list[list[str]], lines: list[int], header: list[str], target: int) -> Matrix:
    """Plain decimal numbers only: float() alone would take '1_000' or Arabic-Indic digits."""
    flat = [cell for row in rows for cell in row]
    try:
        joined = "".join(flat)  # one check over the block, not one per cell
        if not joined.isascii() or "_" in joined:
            raise ValueError
        block = np.array(flat, dtype=np.float64).reshape(len(rows), len(header))
    except ValueError:
        raise _first_bad_cell(rows, lines, header) from None
    if not np.isfinite(block).all():
        row, col = np.argwhere(~np.isfinite(block))[0]
        raise _invalid(
            "every value must be a finite number",
            header[col],
            f"line {lines[row]} holds {rows[row][col].strip()[:40]!r} in column {header[col]!r}",
        )
    wrong = np.flatnonzero((block[:, target] != 0) & (block[:, target] != 1))
    if len(wrong):
        raise _invalid(
            "targets must be 0 or 1",
            header[target],
            f"line {lines[wrong[0]]} holds {rows[wrong[0]][target].strip()[:40]!r} in the target "
            f"column {header[target]!r}, which must hold only 0 or 1",
        )
    return block


def _first_bad_cell(rows: list[list[str]], lines: list[int], header: list[str]) -> ValidationFailed:
    for row, line in zip(rows, lines, strict=True):
        for col, cell in enumerate(row):
            if not (cell.isascii() and "_" not in cell and _is_number(cell)):
                return _invalid(
                    "every value must be a number",
                    header[col],
                    f"line {line} holds {cell.strip()[:40]!r} in column {header[col]!r}, "
                    "which is not a number",
                )
    return _invalid("every value must be a number", "rows", "a value is not a number")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _invalid(message: str, column: str, msg: str) -> ValidationFailed:
    return validation_error(message, ["body", column], msg)
