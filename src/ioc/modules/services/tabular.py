"""Reading CSV and XLSX uploads into rows keyed by column name, with their line numbers."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException

from ioc.core.problems import Problem

MAX_ROWS = 200_000
Row = tuple[int, dict[str, Any]]


def _header(cells: Sequence[Any]) -> list[str]:
    names = [str(c).strip().lower().replace(" ", "_") if c is not None else "" for c in cells]
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise Problem(422, f"Cột '{name}' lặp lại ở dòng tiêu đề (duplicate column).", code="bad-file")
        seen.add(name)
    if not any(names):
        raise Problem(422, "Tệp không có dòng tiêu đề (no header row).", code="bad-file")
    return names


def _empty(values: Sequence[Any]) -> bool:
    return all(v is None or (isinstance(v, str) and not v.strip()) for v in values)


def read_table(filename: str, content: bytes) -> list[Row]:
    """Rows of a CSV (UTF-8) or XLSX file: ``(line in the file, {column: value})``, blank lines skipped."""
    name = filename.lower()
    if name.endswith(".xlsx") or content[:2] == b"PK":
        return _read_xlsx(content)
    if name.endswith(".csv") or name.endswith(".txt") or not name:
        return _read_csv(content)
    raise Problem(415, "Chỉ nhận tệp CSV hoặc XLSX (only CSV or XLSX files).", code="unsupported-file")


def _read_csv(content: bytes) -> list[Row]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Problem(422, f"Tệp CSV không phải UTF-8 (byte {exc.start}).", code="bad-file") from exc
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    rows: list[Row] = []
    try:
        header = _header(next(reader, []))
        for record in reader:
            line = reader.line_num
            if _empty(record):
                continue
            if len(rows) >= MAX_ROWS:
                raise Problem(413, f"Tệp quá {MAX_ROWS} dòng (too many rows).", code="too-many-rows")
            if len(record) > len(header):
                extra = record[len(header) :]
                if not _empty(extra):
                    raise Problem(
                        422,
                        f"Dòng {line} có nhiều ô hơn tiêu đề (more cells than header columns).",
                        code="bad-file",
                        errors=[{"line": line, "column": "", "message": "more cells than header columns"}],
                    )
            rows.append((line, {h: v for h, v in zip(header, record, strict=False) if h}))
    except csv.Error as exc:
        raise Problem(422, f"CSV không đọc được: {exc}", code="bad-file") from exc
    return rows


def _read_xlsx(content: bytes) -> list[Row]:
    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise Problem(422, "Tệp XLSX không đọc được (not a readable XLSX file).", code="bad-file") from exc
    try:
        sheet = book.worksheets[0]
        iterator = sheet.iter_rows(values_only=True)
        header = _header(list(next(iterator, ())))
        rows: list[Row] = []
        for offset, values in enumerate(iterator, start=2):
            if _empty(values):
                continue
            if len(rows) >= MAX_ROWS:
                raise Problem(413, f"Tệp quá {MAX_ROWS} dòng (too many rows).", code="too-many-rows")
            record = {h: _cell(v) for h, v in zip(header, values, strict=False) if h}
            rows.append((offset, record))
        return rows
    finally:
        book.close()


def _cell(value: Any) -> Any:
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
