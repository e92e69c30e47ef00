"""Reading CSV and XLSX uploads: rows with their line numbers, and problems naming the line."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from openpyxl import Workbook, load_workbook

from ioc.core.problems import Problem
from ioc.core.tabular import MAX_ROWS, read_table, template_csv, template_xlsx


def xlsx(rows: list[list[object]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def problem(filename: str, content: bytes) -> Problem:
    with pytest.raises(Problem) as caught:
        read_table(filename, content)
    return caught.value


def test_csv_rows_keep_their_line_numbers() -> None:
    content = "\ufeffMã Số;Giá trị\nA;1\n\n;\nB;2,5\n".encode()
    assert read_table("so-lieu.csv", content) == [
        (2, {"mã_số": "A", "giá_trị": "1"}),
        (5, {"mã_số": "B", "giá_trị": "2,5"}),
    ]


def test_a_csv_record_is_numbered_by_the_line_it_starts_on() -> None:
    content = b'code,note\nA,"two\nlines"\nB,x\n'
    assert [line for line, _ in read_table("x.csv", content)] == [2, 4]


def test_csv_errors_name_the_line() -> None:
    p = problem("x.csv", b"code,value\nA,1\nB,2,3\n")
    assert (p.status, p.code) == (422, "bad-file")
    assert p.extra["errors"] == [
        {"line": 3, "column": "", "message": "có ô ngoài các cột có tiêu đề (a cell outside the named columns)."}
    ]
    assert "Dòng 3" in p.detail
    p = problem("x.csv", "code,value\nA,1\nB,\xe9\n".encode("latin-1"))
    assert p.code == "bad-file" and p.extra["errors"][0]["line"] == 3
    p = problem("x.csv", b"code,Code\nA,1\n")
    assert p.extra["errors"][0] == {"line": 1, "column": "code", "message": p.extra["errors"][0]["message"]}
    assert problem("x.csv", b"\n\n").code == "bad-file"
    # extra cells that are empty are fine
    assert read_table("x.csv", b"code,value\nA,1,,\n") == [(2, {"code": "A", "value": "1"})]


def test_xlsx_rows_keep_their_line_numbers_and_types() -> None:
    when = datetime(2026, 3, 2, 9, 0)
    content = xlsx([["Code", "Value", "At"], ["A", 1.0, when], [None, None, None], ["B", 2.5, None]])
    assert read_table("so-lieu.xlsx", content) == [
        (2, {"code": "A", "value": 1, "at": when}),
        (4, {"code": "B", "value": 2.5, "at": None}),
    ]
    # recognised by its content whatever its name
    assert read_table("", content) == read_table("x.xlsx", content)


def test_xlsx_errors_name_the_line() -> None:
    p = problem("x.xlsx", xlsx([["code", "value"], ["A", 1], [None, None], ["B", 2, "thừa"]]))
    assert (p.status, p.code) == (422, "bad-file")
    assert p.extra["errors"][0]["line"] == 4
    p = problem("x.xlsx", xlsx([["code", "code"], ["A", 1]]))
    assert p.extra["errors"][0]["line"] == 1
    assert problem("x.xlsx", b"PK\x03\x04 not a workbook").code == "bad-file"


def test_other_files_are_refused() -> None:
    p = problem("anh.png", b"\x89PNG")
    assert (p.status, p.code) == (415, "unsupported-file")


def test_too_many_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ioc.core.tabular.MAX_ROWS", 2)
    assert problem("x.csv", b"a\n1\n2\n3\n").status == 413
    assert MAX_ROWS == 200_000


def test_templates() -> None:
    assert template_csv(["code", "tên"]).decode("utf-8-sig") == "code,tên\r\n"
    book = load_workbook(io.BytesIO(template_xlsx(["code", "value"], [("code", "có", "Mã")], "dossiers")))
    assert book.sheetnames == ["dossiers", "Hướng dẫn"]
    assert [c.value for c in book["dossiers"][1]] == ["code", "value"]
    assert read_table("mau.xlsx", template_xlsx(["code"], [], "x")) == []
