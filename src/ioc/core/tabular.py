"""Reading CSV and XLSX uploads into rows keyed by column name, with their line numbers.

Every import of the modules reads its file here, so a person fixing a file sees the same
errors everywhere: RFC 7807 problems whose ``errors`` name the line (as a spreadsheet program
numbers it: the header is line 1) and the column at fault. Templates to fill are made here too.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException

from ioc.core.problems import Problem

#: At most this many data rows per file (413 beyond).
MAX_ROWS = 200_000
#: One data row: (line in the file, {column: value}); columns are lower-case, spaces as ``_``.
Row = tuple[int, dict[str, Any]]


def bad_file(message: str, line: int | None = None, column: str = "") -> Problem:
    """A 422 problem about the file itself (code ``bad-file``), naming the line when known."""
    errors = [{"line": line, "column": column, "message": message}] if line is not None else []
    where = f"Dòng {line}: " if line is not None else ""
    return Problem(422, where + message, code="bad-file", errors=errors)


def _header(cells: Iterable[Any]) -> list[str]:
    names = [str(c).strip().lower().replace(" ", "_") if c is not None else "" for c in cells]
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise bad_file(f"cột '{name}' lặp lại ở dòng tiêu đề (duplicate column).", 1, name)
        seen.add(name)
    if not any(names):
        raise bad_file("Tệp không có dòng tiêu đề (no header row).")
    return names


def _empty(values: Sequence[Any]) -> bool:
    return all(v is None or (isinstance(v, str) and not v.strip()) for v in values)


def _record(header: list[str], values: Sequence[Any], line: int) -> dict[str, Any]:
    """The row as {column: value}; a cell without a column name (beyond the header, or under an
    empty header cell) must be empty, or its value would be lost silently."""
    names = [*header, *[""] * (len(values) - len(header))]
    if not _empty([v for h, v in zip(names, values, strict=False) if not h]):
        raise bad_file("có ô ngoài các cột có tiêu đề (a cell outside the named columns).", line)
    return {h: v for h, v in zip(header, values, strict=False) if h}


def read_table(filename: str, content: bytes) -> list[Row]:
    """Rows of a CSV (UTF-8, ``,`` ``;`` or tab separated) or XLSX (first sheet) file, blank lines skipped.

    Raises :class:`Problem`: 415 for another kind of file, 422 (``bad-file``, with the line)
    for an unreadable one, 413 beyond :data:`MAX_ROWS` rows.
    """
    name = filename.lower()
    if name.endswith(".xlsx") or content[:2] == b"PK":
        return _read_xlsx(content)
    if name.endswith((".csv", ".txt")) or not name:
        return _read_csv(content)
    raise Problem(415, "Chỉ nhận tệp CSV hoặc XLSX (only CSV or XLSX files).", code="unsupported-file")


def _too_many() -> Problem:
    return Problem(413, f"Tệp quá {MAX_ROWS} dòng (too many rows).", code="too-many-rows")


def _read_csv(content: bytes) -> list[Row]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise bad_file(f"tệp CSV không phải UTF-8 (not UTF-8 at byte {exc.start}).", line) from exc
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    rows: list[Row] = []
    try:
        header = _header(next(reader, []))
        end = reader.line_num
        for record in reader:
            # A record starts on the line after the previous one ended (a quoted cell may span lines).
            line, end = end + 1, reader.line_num
            if _empty(record):
                continue
            if len(rows) >= MAX_ROWS:
                raise _too_many()
            rows.append((line, _record(header, record, line)))
    except csv.Error as exc:
        raise bad_file(f"CSV không đọc được (unreadable CSV): {exc}", reader.line_num) from exc
    return rows


def _read_xlsx(content: bytes) -> list[Row]:
    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise bad_file("Tệp XLSX không đọc được (not a readable XLSX file).") from exc
    try:
        if not book.worksheets:
            raise bad_file("Tệp XLSX không có trang tính (no worksheet).")
        iterator = book.worksheets[0].iter_rows(values_only=True)
        header = _header(next(iterator, ()))
        rows: list[Row] = []
        for line, values in enumerate(iterator, start=2):
            if _empty(values):
                continue
            if len(rows) >= MAX_ROWS:
                raise _too_many()
            rows.append((line, {h: _cell(v) for h, v in _record(header, values, line).items()}))
        return rows
    finally:
        book.close()


def _cell(value: Any) -> Any:
    """A cell's value: dates as they are, whole floats (how XLSX stores integers) as ints."""
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def template_csv(columns: Sequence[str]) -> bytes:
    """A CSV template: the header row only (UTF-8 with BOM, so spreadsheet programs read accents)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(columns)
    return out.getvalue().encode("utf-8-sig")


def template_xlsx(columns: Sequence[str], help_rows: Sequence[Sequence[str]], sheet: str) -> bytes:
    """An XLSX template: the header row to fill on the first sheet, the meaning of each column on a second."""
    book = Workbook()
    data = book.active
    assert data is not None
    data.title = sheet
    data.append(list(columns))
    for cell in data[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
    for index, column in enumerate(columns, start=1):
        data.column_dimensions[get_column_letter(index)].width = max(14, len(column) + 4)
    guide = book.create_sheet("Hướng dẫn")
    guide.append(["Cột (column)", "Bắt buộc (required)", "Ý nghĩa và giá trị (meaning, values)"])
    for cell in guide[1]:
        cell.font = Font(bold=True)
    for row in help_rows:
        guide.append(list(row))
    guide.column_dimensions["A"].width = 20
    guide.column_dimensions["B"].width = 12
    guide.column_dimensions["C"].width = 100
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
