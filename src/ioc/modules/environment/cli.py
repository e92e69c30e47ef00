"""The ``ioc env`` command's logic: VN_AQI and VN_WQI of CSV files (argparse wiring in ``commands``).

``ioc env aqi --hourly FILE`` / ``--daily FILE`` read ``station_id,time,pm25,pm10,o3,no2,so2,co``
(µg/m³, CO included; empty = missing; times ISO 8601 with a UTC offset, each marking the end of
its averaging hour) and write ``station_id,time,aqi,dominant`` (one row per good input row) or
``station_id,date,aqi,dominant`` (one row per local day with at least one good row).
``ioc env wqi FILE`` reads ``station_id,time`` and the parameter columns of
:data:`ioc.modules.environment.wqi.SAMPLE_KEYS` and writes ``station_id,time,wqi,reason``.
Rows are sorted by station (code-point order of ``station_id``) then time; the ``time`` cell is
written back as it was given. ``-`` reads stdin; ``--output`` writes a file instead of stdout.

Bad rows go to stderr with their line number and reason and are left out; the others are
computed. Exit status: 0 when at least one row was good (or the file had no data rows), 1 when
every data row was bad, 2 when the file cannot be read or its header is wrong.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

import numpy as np

from . import wqi as wqi_mod
from .aqi import HOUR, POLLUTANTS, VN_TZ, StationArrays, daily_aqi_batch, hourly_aqi_batch

PROG = "ioc env"
AQI_COLUMNS = ("station_id", "time", *POLLUTANTS)
WQI_COLUMNS = ("station_id", "time", *wqi_mod.SAMPLE_KEYS)
SEGMENT_GAP = 48 * HOUR  # rows further apart than this cannot affect each other (NowCast 12 h, O3 8 h, a day)


class InputError(Exception):
    """The file as a whole cannot be used (exit status 2)."""


@dataclass
class _Row:
    line: int
    station: str
    time_text: str
    at: datetime
    values: tuple[float, ...]


@dataclass
class _Reader:
    """Rows of one CSV file, the bad ones reported on ``stderr``."""

    columns: tuple[str, ...]  # the allowed value columns
    stderr: TextIO
    good: int = 0
    bad: int = 0

    def report(self, line: int, vi: str, en: str) -> None:
        self.bad += 1
        print(f"{PROG}: dòng {line} (line {line}): {vi} ({en})", file=self.stderr)

    def rows(self, stream: TextIO) -> Iterator[_Row]:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None:
            raise InputError("tệp trống, thiếu dòng tiêu đề (empty file: no header line)")
        names = [h.strip().lower().lstrip("\ufeff") for h in header]
        unknown = [n for n in names if n not in ("station_id", "time", *self.columns)]
        if unknown:
            raise InputError(
                f"cột không hợp lệ {', '.join(repr(n) for n in unknown)} (unknown columns; allowed: "
                f"station_id, time, {', '.join(self.columns)})"
            )
        if len(set(names)) != len(names):
            raise InputError("cột bị lặp trong tiêu đề (a column appears twice in the header)")
        if "station_id" not in names or "time" not in names:
            raise InputError("tiêu đề phải có station_id và time (the header needs station_id and time)")
        where = {n: i for i, n in enumerate(names)}
        value_at = [where.get(c) for c in self.columns]
        seen: dict[tuple[str, datetime], int] = {}
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            row = self._parse(line, cells, names, where, value_at)
            if row is None:
                continue
            key = (row.station, row.at)
            if key in seen:
                self.report(
                    line, f"trùng trạm và thời gian với dòng {seen[key]}", f"same station and time as line {seen[key]}"
                )
                continue
            seen[key] = line
            self.good += 1
            yield row

    def _parse(
        self, line: int, cells: list[str], names: list[str], where: dict[str, int], value_at: list[int | None]
    ) -> _Row | None:
        if len(cells) != len(names):
            self.report(line, f"cần {len(names)} ô, có {len(cells)}", f"expected {len(names)} fields, got {len(cells)}")
            return None
        station = cells[where["station_id"]].strip()
        if not station:
            self.report(line, "thiếu station_id", "missing station_id")
            return None
        text = cells[where["time"]].strip()
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            self.report(line, f"thời gian {text!r} không đúng ISO 8601", f"time {text!r} is not ISO 8601")
            return None
        if at.tzinfo is None or at.utcoffset() is None:
            self.report(line, f"thời gian {text!r} thiếu độ lệch UTC", f"time {text!r} has no UTC offset")
            return None
        local = at.astimezone(VN_TZ)
        if (local.minute, local.second, local.microsecond) != (0, 0, 0):
            self.report(line, f"thời gian {text!r} không tròn giờ", f"time {text!r} is not on the hour")
            return None
        values: list[float] = []
        for column, i in zip(self.columns, value_at, strict=True):
            cell = cells[i].strip() if i is not None else ""
            if not cell:
                values.append(math.nan)
                continue
            try:
                x = float(cell)
            except ValueError:
                x = math.nan
                ok = False
            else:
                ok = math.isfinite(x)
            if not ok:
                self.report(line, f"{column}: {cell!r} không phải là số", f"{column}: {cell!r} is not a number")
                return None
            if x < 0 and column != "temp":
                self.report(line, f"{column}: giá trị âm {cell}", f"{column}: negative value {cell}")
                return None
            values.append(x)
        return _Row(line, station, text, at, tuple(values))


@contextmanager
def _opened(source: str, stdin: TextIO) -> Iterator[TextIO]:
    if source == "-":
        yield stdin
        return
    try:
        stream = Path(source).open(encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"không đọc được {source} (cannot read it): {exc.strerror}") from exc
    with stream:
        yield stream


@contextmanager
def _output(target: str | None, stdout: TextIO) -> Iterator[TextIO]:
    if target is None or target == "-":
        yield stdout
        return
    try:
        stream = Path(target).open("w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"không ghi được {target} (cannot write it): {exc.strerror}") from exc
    with stream:
        yield stream


def _segments(rows: list[_Row]) -> list[list[_Row]]:
    """Rows of one station in time order, cut where two rows are more than 48 hours apart."""
    rows.sort(key=lambda r: r.at)
    out: list[list[_Row]] = []
    for row in rows:
        if out and row.at - out[-1][-1].at <= SEGMENT_GAP:
            out[-1].append(row)
        else:
            out.append([row])
    return out


def _arrays(segment: list[_Row]) -> tuple[StationArrays, list[int]]:
    start = segment[0].at
    index = [(r.at - start) // HOUR for r in segment]
    values = np.full((index[-1] + 1, len(POLLUTANTS)), np.nan)
    values[index] = [r.values for r in segment]
    return (start, {p: values[:, j] for j, p in enumerate(POLLUTANTS)}), index


def _finish(reader: _Reader, stderr: TextIO) -> int:
    if reader.bad:
        print(
            f"{PROG}: {reader.bad} dòng lỗi bị bỏ qua, {reader.good} dòng hợp lệ "
            f"({reader.bad} bad rows left out, {reader.good} good rows)",
            file=stderr,
        )
    if reader.bad and not reader.good:
        print(f"{PROG}: không có dòng hợp lệ nào (no valid rows)", file=stderr)
        return 1
    return 0


def _fail(message: str, stderr: TextIO) -> int:
    print(f"{PROG}: {message}", file=stderr)
    return 2


def run_aqi(
    source: str,
    *,
    daily: bool,
    output: str | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """``ioc env aqi``: hourly (``daily=False``) or daily VN_AQI of a CSV file; the exit status."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    reader = _Reader(POLLUTANTS, stderr)
    try:
        with _opened(source, stdin) as stream:
            by_station: dict[str, list[_Row]] = {}
            for row in reader.rows(stream):
                by_station.setdefault(row.station, []).append(row)
        items: list[StationArrays] = []
        keys: list[tuple[str, list[_Row], list[int]]] = []
        for station in sorted(by_station):
            for segment in _segments(by_station[station]):
                item, index = _arrays(segment)
                items.append(item)
                keys.append((station, segment, index))
        with _output(output, stdout) as out:
            writer = csv.writer(out, lineterminator="\n")
            if daily:
                writer.writerow(("station_id", "date", "aqi", "dominant"))
                for (station, segment, _), days in zip(keys, daily_aqi_batch(items), strict=True):
                    rows = sorted({((r.at.astimezone(VN_TZ) - HOUR).date() - days.first_day).days for r in segment})
                    for d in rows:
                        writer.writerow((station, days.day(d).isoformat(), *_cells(days.aqi[d], days.dominant[d])))
            else:
                writer.writerow(("station_id", "time", "aqi", "dominant"))
                for (station, segment, index), table in zip(keys, hourly_aqi_batch(items), strict=True):
                    for row, i in zip(segment, index, strict=True):
                        writer.writerow((station, row.time_text, *_cells(table.aqi[i], table.dominant[i])))
    except InputError as exc:
        return _fail(str(exc), stderr)
    return _finish(reader, stderr)


def _cells(aqi: np.int64, dominant: np.int64) -> tuple[str, str]:
    if aqi < 0:
        return "", ""
    return str(int(aqi)), POLLUTANTS[int(dominant)]


def run_wqi(
    source: str,
    *,
    output: str | None = None,
    weighted: bool = False,
    pesticides: bool = False,
    heavy_metals: bool = False,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """``ioc env wqi``: VN_WQI of each water sample of a CSV file; the exit status."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    reader = _Reader(wqi_mod.SAMPLE_KEYS, stderr)
    results: list[tuple[str, datetime, str, str, str]] = []
    try:
        with _opened(source, stdin) as stream:
            for row in reader.rows(stream):
                sample = {k: v for k, v in zip(wqi_mod.SAMPLE_KEYS, row.values, strict=True) if not math.isnan(v)}
                try:
                    result = wqi_mod.wqi(sample, weighted=weighted, pesticides=pesticides, heavy_metals=heavy_metals)
                except ValueError as exc:
                    reader.good -= 1
                    reader.report(row.line, *_split(str(exc)))
                    continue
                value = "" if result.wqi is None else str(result.wqi)
                results.append((row.station, row.at, row.time_text, value, result.reason or ""))
        results.sort(key=lambda r: (r[0], r[1]))
        with _output(output, stdout) as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(("station_id", "time", "wqi", "reason"))
            for station, _, text, value, reason in results:
                writer.writerow((station, text, value, reason))
    except InputError as exc:
        return _fail(str(exc), stderr)
    return _finish(reader, stderr)


def _split(message: str) -> tuple[str, str]:
    """ "vi (en)" → (vi, en)."""
    if message.endswith(")") and " (" in message:
        vi, en = message[:-1].rsplit(" (", 1)
        return vi, en
    return message, message
