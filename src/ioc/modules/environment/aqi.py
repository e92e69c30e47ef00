"""VN_AQI exactly as QĐ 1459/QĐ-TCMT (2019) defines it: pure functions, no I/O beyond the tables.

Concentrations are µg/m³ for every pollutant, CO included (Bảng 2 lists CO in µg/m³:
10 mg/m³ = 10 000 µg/m³); :mod:`.units` converts other units. A series maps the *end* of each
averaging hour (an aware datetime) to the hour's mean, ``None``/NaN meaning missing.

The rules, with the choices the decision leaves open (docs/ENVIRONMENT.md, section VN_AQI):

* Sub-index (Công thức 1/2): ``I_i + (I_{i+1} − I_i)·(C − BP_i)/(BP_{i+1} − BP_i)`` on the segment
  holding C. Concentrations are used as given: nothing is truncated or rounded before the
  lookup (the decision prescribes no such step). C at or above the top breakpoint (Bảng 2 writes
  it "≥") gives 500. The O3 8-hour table stops at 400 µg/m³ (index 300).
* Rounding: "làm tròn thành số nguyên" is applied half-up, on the exact value of the formula
  (the decimal inputs taken as exact numbers): PM10 352.45 gives 203.5 → 204 although binary
  floating point computes 203.49999999999997. Each published sub-index is rounded the same way; the
  AQI is the largest of them, which equals the rounded largest raw sub-index.
* Hourly PM2.5/PM10 use NowCast over c1 (this hour) … c12: w* = Cmin/Cmax over the values present;
  w = 1/2 if w* ≤ 1/2 else w*. For w > 1/2, NowCast = Σ w^(i−1)·ci / Σ w^(i−1); for w = 1/2 the
  decision's formula Σ (1/2)^i·ci, as printed (not divided by the weights). A missing ci gets the
  weight 0 (both formulas). No NowCast unless at least 2 of c1, c2, c3 are present; Cmax = 0
  (all present values 0) gives 0. O3 (1-hour table), NO2, SO2, CO use the hour's own value.
* Daily (day D = hours stamped D 01:00 … D+1 00:00 local): PM 24-hour means of the hours present;
  O3 the larger of the sub-index of the day's highest 1-hour value (1-hour table) and of the
  day's highest 8-hour mean (8-hour table), the latter dropped when that mean is above 400; an
  8-hour mean stamped at hour h is the mean of hours h−7 … h and exists only when all 8 are
  present (they may belong to the day before); SO2, NO2, CO the day's highest 1-hour value.
* No AQI without PM: the decision requires PM2.5 or PM10 in the formula; if neither has a value
  (no NowCast, no 24-hour mean), the AQI is None while the other sub-indices are still reported.
* Dominant pollutant: the one with the largest sub-index before rounding; equal values (to 1e-9)
  go to the first in ``POLLUTANTS`` order (PM2.5, PM10, O3, NO2, SO2, CO).
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

POLLUTANTS = ("pm25", "pm10", "o3", "no2", "so2", "co")
PM = ("pm25", "pm10")
HOUR = timedelta(hours=1)
NOWCAST_HOURS = 12
O3_8H_HOURS = 8
_TIE = 1e-9
_DATA = Path(__file__).parent / "data" / "vn_aqi_qd1459.json"

Series = Mapping[datetime, float | None]


def _vn_tz() -> tzinfo:
    try:
        return ZoneInfo("Asia/Ho_Chi_Minh")
    except ZoneInfoNotFoundError:  # no tz database on the host: Vietnam keeps +07:00 all year
        return timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")


VN_TZ = _vn_tz()


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Band:
    """One VN_AQI level (Bảng 1, 4, 5): name, colour, health effect and advice."""

    level: int
    name_vi: str
    name_en: str
    colour: str  # "#rrggbb" from the decision's RGB
    advice_vi: str  # Bảng 5, the general public
    advice_en: str
    low: int
    high: int
    colour_name_vi: str = ""
    colour_name_en: str = ""
    rgb: tuple[int, int, int] = (0, 0, 0)
    health_vi: str = ""  # Bảng 4
    health_en: str = ""
    sensitive_vi: str = ""  # Bảng 5, sensitive groups
    sensitive_en: str = ""


@dataclass(frozen=True)
class AqiResult:
    """One hourly or daily VN_AQI: ``aqi`` None where the decision gives no value."""

    aqi: int | None
    dominant: str | None
    sub_indices: dict[str, int]
    band: Band | None


@dataclass(frozen=True)
class _Table:
    bp: tuple[Fraction, ...]
    levels: tuple[int, ...]
    capped: bool  # the top breakpoint is "≥": at or above it the index is 500
    bp_f: FloatArray = field(compare=False)
    lv_f: FloatArray = field(compare=False)
    bp_i: IntArray = field(compare=False)
    lv_i: IntArray = field(compare=False)

    @property
    def top(self) -> Fraction:
        return self.bp[-1]


def _load() -> tuple[dict[str, _Table], tuple[Band, ...], Fraction]:
    raw: dict[str, Any] = json.loads(_DATA.read_text(encoding="utf-8"))
    levels = tuple(int(v) for v in raw["index_levels"])
    tables: dict[str, _Table] = {}
    for key, bps in raw["breakpoints_ugm3"].items():
        if any(b != int(b) for b in bps):
            raise ValueError(f"{key}: breakpoints must be whole µg/m³")
        lv = levels[: len(bps)]
        tables[key] = _Table(
            bp=tuple(Fraction(str(b)) for b in bps),
            levels=lv,
            capped=len(bps) == len(levels),
            bp_f=np.array(bps, dtype=np.float64),
            lv_f=np.array(lv, dtype=np.float64),
            bp_i=np.array([int(b) for b in bps], dtype=np.int64),
            lv_i=np.array(lv, dtype=np.int64),
        )
    bands = tuple(
        Band(
            level=b["level"],
            name_vi=b["name_vi"],
            name_en=b["name_en"],
            colour="#{:02x}{:02x}{:02x}".format(*b["rgb"]),
            advice_vi=b["advice_vi"],
            advice_en=b["advice_en"],
            low=b["low"],
            high=b["high"],
            colour_name_vi=b["colour_vi"],
            colour_name_en=b["colour_en"],
            rgb=(b["rgb"][0], b["rgb"][1], b["rgb"][2]),
            health_vi=b["health_vi"],
            health_en=b["health_en"],
            sensitive_vi=b["sensitive_vi"],
            sensitive_en=b["sensitive_en"],
        )
        for b in raw["bands"]
    )
    return tables, bands, Fraction(str(raw["o3_8h_limit_ugm3"]))


TABLES, BANDS, O3_8H_LIMIT = _load()
_HOURLY_TABLE = {"pm25": "pm25", "pm10": "pm10", "o3": "o3_1h", "no2": "no2", "so2": "so2", "co": "co"}


def band_for(aqi: int) -> Band:
    """The band (Bảng 1) of an AQI value 0…500."""
    for band in BANDS:
        if band.low <= aqi <= band.high:
            return band
    raise ValueError(f"AQI {aqi} ngoài thang 0–500 (outside the 0–500 scale)")


def _table_for(pollutant: str, averaging: str) -> _Table:
    if pollutant not in POLLUTANTS:
        raise ValueError(f"không có thông số {pollutant!r} (unknown pollutant; one of {', '.join(POLLUTANTS)})")
    if averaging == "1h":
        return TABLES[_HOURLY_TABLE[pollutant]]
    if averaging == "24h" and pollutant in PM:
        return TABLES[pollutant]
    if averaging == "8h" and pollutant == "o3":
        return TABLES["o3_8h"]
    raise ValueError(f"{pollutant} không có bảng trung bình {averaging} (no {averaging} table for {pollutant})")


# --------------------------------------------------------------------------- exact arithmetic


def _q(x: float) -> Fraction:
    """The decimal number a float was written as (``20.6`` → 103/5): the exact input of the formula."""
    return Fraction(repr(float(x)))


def _half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def _sub_exact(table: _Table, c: Fraction) -> Fraction | None:
    if c >= table.top:
        if table.capped:
            return Fraction(500)
        return Fraction(table.levels[-1]) if c == table.top else None
    i = bisect_right(table.bp, c) - 1
    lo, hi = table.bp[i], table.bp[i + 1]
    return table.levels[i] + (table.levels[i + 1] - table.levels[i]) * (c - lo) / (hi - lo)


def _nowcast_exact(newest_first: Sequence[float]) -> Fraction | None:
    present = [(i, _q(v)) for i, v in enumerate(newest_first[:NOWCAST_HOURS]) if not math.isnan(v)]
    if sum(1 for i, _ in present if i < 3) < 2:
        return None
    cmax = max(v for _, v in present)
    if cmax == 0:
        return Fraction(0)
    w = min(v for _, v in present) / cmax
    if w <= Fraction(1, 2):
        return sum((Fraction(1, 2) ** (i + 1) * v for i, v in present), Fraction(0))
    num = sum((w**i * v for i, v in present), Fraction(0))
    den = sum((w**i for i, _ in present), Fraction(0))
    return num / den


def _max8_exact(x: FloatArray, first: int, last: int) -> Fraction | None:
    """The largest full 8-hour mean among those stamped at indexes first … last (inclusive)."""
    best: Fraction | None = None
    for k in range(max(first, O3_8H_HOURS - 1), last + 1):
        window = x[k - O3_8H_HOURS + 1 : k + 1]
        if np.isnan(window).any():
            continue
        m = sum((_q(v) for v in window), Fraction(0)) / O3_8H_HOURS
        best = m if best is None or m > best else best
    return best


# --------------------------------------------------------------------------- vectorised pieces

_SCALE = 1_000_000  # inputs with at most 6 decimals are handled in exact integer arithmetic


def _segments(table: _Table, c: FloatArray) -> IntArray:
    """Index i of the segment BP_i ≤ c < BP_(i+1) (clipped to the table; NaN lands anywhere)."""
    seg: IntArray = np.searchsorted(table.bp_f, c, side="right") - 1
    np.clip(seg, 0, len(table.bp) - 2, out=seg)
    return seg


def _raw(table: _Table, c: FloatArray, seg: IntArray | None = None) -> FloatArray:
    """Raw (unrounded) sub-indices of concentrations ``c`` (NaN in → NaN out)."""
    if seg is None:
        seg = _segments(table, c)
    bp, lv = table.bp_f, table.lv_f
    lo = bp[seg]
    val = lv[seg] + (lv[seg + 1] - lv[seg]) * (c - lo) / (bp[seg + 1] - lo)
    top = bp[-1]
    # at or above a "≥" top breakpoint: 500; above the O3 8-hour table's end: no index (NaN stays NaN)
    out: FloatArray = np.where(c >= top, 500.0, val) if table.capped else np.where(c > top, np.nan, val)
    return out


def _decimals(x: FloatArray) -> tuple[IntArray, BoolArray]:
    """``m`` with ``x == m / 10⁶`` exactly, and where that holds (values written with ≤ 6 decimals)."""
    small = np.abs(x) < 1e9  # False for NaN
    m = np.rint(np.where(small, x, 0.0) * _SCALE)  # NaN and huge values become 0 (and not ok)
    ok = small & (m / _SCALE == x)
    return m.astype(np.int64), ok


@dataclass
class _Conc:
    """Concentrations for one table: float values (NaN = none) and, where ``ok``, the exact num/den."""

    c: FloatArray
    num: IntArray
    den: IntArray
    ok: BoolArray


def _direct(x: FloatArray) -> _Conc:
    m, ok = _decimals(x)
    return _Conc(x, m, np.full(len(x), _SCALE, dtype=np.int64), ok)


def _sub_indices(table: _Table, conc: _Conc, fallback: Callable[[int], Fraction | None]) -> tuple[FloatArray, IntArray]:
    """Raw and half-up rounded sub-indices (-1 = none).

    Rows with an exact num/den are rounded in integer arithmetic; the others in floating point,
    values within 1e-9 of a half being settled by ``fallback(i)`` (an exact Fraction).
    """
    seg = _segments(table, conc.c)
    raw = _raw(table, conc.c, seg)
    has = ~np.isnan(raw)
    safe = np.where(has, raw, 0.0)
    out: IntArray = np.where(has, np.floor(safe + 0.5), -1).astype(np.int64)
    exact = has & conc.ok
    if exact.any():
        num, den = conc.num, conc.den
        lo, hi = table.bp_i[seg], table.bp_i[seg + 1]
        ilo, ihi = table.lv_i[seg], table.lv_i[seg + 1]
        step = hi - lo
        r = ilo + (2 * (ihi - ilo) * (num - lo * den) + step * den) // (2 * step * den)
        if table.capped:
            r[conc.c >= table.bp_f[-1]] = 500
        np.copyto(out, r, where=exact)
    near = has & ~conc.ok & (np.abs(safe - np.floor(safe) - 0.5) < _TIE)
    for i in np.flatnonzero(near):
        value = fallback(int(i))
        out[i] = -1 if value is None else _half_up(value)
    return raw, out


def _nowcast_array(x: FloatArray) -> FloatArray:
    """NowCast at every hour of a contiguous hourly array (NaN where there is none)."""
    n = len(x)
    k = NOWCAST_HOURS - 1
    pad = np.concatenate([np.full(k, np.nan), x])
    lo = np.where(np.isnan(pad), np.inf, pad)
    hi = np.where(np.isnan(pad), -np.inf, pad)
    zeros = np.where(np.isnan(pad), 0.0, pad)
    here = (~np.isnan(pad)).astype(np.float64)
    cmax = hi[k:].copy()
    cmin = lo[k:].copy()
    for i in range(1, NOWCAST_HOURS):  # c_(i+1) of row j is x[j - i]
        np.maximum(cmax, hi[k - i : k - i + n], out=cmax)
        np.minimum(cmin, lo[k - i : k - i + n], out=cmin)
    positive = cmax > 0
    wstar = np.where(positive, cmin / np.where(positive, cmax, 1.0), 1.0)
    half = wstar <= 0.5
    w = np.where(half, 0.5, wstar)
    num = np.zeros(n)
    den = np.zeros(n)
    wp = np.ones(n)
    pw = np.empty(n)
    for i in range(NOWCAST_HOURS):
        np.multiply(wp, here[k - i : k - i + n], out=pw)  # w^(i-1), 0 when ci is missing
        den += pw
        pw *= zeros[k - i : k - i + n]
        num += pw
        wp *= w
    recent = here[k:] + here[k - 1 : k - 1 + n] + here[k - 2 : k - 2 + n]
    nowcast = np.where(half, 0.5 * num, num / np.where(den > 0, den, 1.0))
    out: FloatArray = np.where(recent >= 2, nowcast, np.nan)
    return out


def nowcast(values_newest_first: Sequence[float | None]) -> float | None:
    """NowCast of up to 12 hourly means, c1 (this hour) first; None without 2 of the first 3."""
    if len(values_newest_first) > NOWCAST_HOURS:
        raise ValueError(f"NowCast dùng tối đa {NOWCAST_HOURS} giá trị (at most 12 values)")
    vals = [_clean(v) for v in values_newest_first]
    vals += [math.nan] * (NOWCAST_HOURS - len(vals))
    result = float(_nowcast_array(np.array(vals[::-1], dtype=np.float64))[-1])
    return None if math.isnan(result) else result


def sub_index(pollutant: str, concentration: float, averaging: str) -> int:
    """The rounded sub-index (AQIx) of one concentration, µg/m³; ``averaging`` "1h", "8h" or "24h".

    "1h" is the hourly table (for PM2.5/PM10 pass the NowCast), "24h" the PM daily mean, "8h" the
    O3 8-hour mean (ValueError above 400 µg/m³, where the decision computes no 8-hour index).
    """
    table = _table_for(pollutant, averaging)
    c = _clean(concentration)
    if math.isnan(c):
        raise ValueError("nồng độ không phải là số (concentration is not a number)")
    value = _sub_exact(table, _q(c))
    if value is None:
        raise ValueError(
            f"O3 trung bình 8 giờ trên {O3_8H_LIMIT} µg/m³ không tính AQI (no 8-hour O3 index above 400 µg/m³)"
        )
    return _half_up(value)


def _clean(v: float | None) -> float:
    if v is None:
        return math.nan
    x = float(v)
    if math.isinf(x):
        raise ValueError("nồng độ vô hạn (infinite concentration)")
    if x < 0:
        raise ValueError(f"nồng độ âm {x} (negative concentration)")
    return x


# --------------------------------------------------------------------------- result tables


@dataclass(frozen=True)
class AqiTable:
    """VN_AQI of consecutive hours or days of one station, as arrays (-1 = no value).

    ``sub`` is (n, 6) in ``POLLUTANTS`` order; ``dominant`` indexes ``POLLUTANTS``; ``has_data``
    marks rows with at least one measured value.
    """

    aqi: IntArray
    dominant: IntArray
    sub: IntArray
    has_data: BoolArray

    def __len__(self) -> int:
        return len(self.aqi)

    def result(self, i: int) -> AqiResult:
        value = int(self.aqi[i])
        dom = int(self.dominant[i])
        subs = {p: int(s) for p, s in zip(POLLUTANTS, self.sub[i], strict=True) if s >= 0}
        if value < 0:
            return AqiResult(None, None, subs, None)
        return AqiResult(value, POLLUTANTS[dom], subs, band_for(value))


@dataclass(frozen=True)
class HourlyTable(AqiTable):
    """Row k is the hour ending ``start + k h``."""

    start: datetime

    def time(self, i: int) -> datetime:
        return self.start + i * HOUR


@dataclass(frozen=True)
class DailyTable(AqiTable):
    """Row k is the local day ``first_day + k days``."""

    first_day: date

    def day(self, i: int) -> date:
        return self.first_day + timedelta(days=i)


def _combine(raw: FloatArray, sub: IntArray) -> tuple[IntArray, IntArray]:
    """AQI (largest rounded sub-index, only with PM) and the dominant pollutant of each row."""
    has_pm = (sub[:, 0] >= 0) | (sub[:, 1] >= 0)
    best = sub.max(axis=1)
    candidates = (sub == best[:, None]) & (sub >= 0)
    raw_c = np.where(candidates, raw, -np.inf)
    top = raw_c.max(axis=1)
    pick = candidates & (raw_c >= top[:, None] - _TIE)
    aqi: IntArray = np.where(has_pm, best, -1).astype(np.int64)
    dominant: IntArray = np.where(has_pm, np.argmax(pick, axis=1), -1).astype(np.int64)
    return aqi, dominant


StationArrays = tuple[datetime, Mapping[str, Any]]


def _as_arrays(arrays: Mapping[str, Any]) -> tuple[int, dict[str, FloatArray]]:
    unknown = set(arrays) - set(POLLUTANTS)
    if unknown:
        raise ValueError(f"không có thông số {sorted(unknown)} (unknown pollutants)")
    out: dict[str, FloatArray] = {}
    n = -1
    for p in POLLUTANTS:
        if p not in arrays:
            continue
        given = arrays[p]
        if isinstance(given, np.ndarray):
            a = given.astype(np.float64)
        else:
            a = np.array([math.nan if v is None else v for v in given], dtype=np.float64)
        if n >= 0 and len(a) != n:
            raise ValueError("các chuỗi phải cùng độ dài (all arrays must have the same length)")
        n = len(a)
        if np.isinf(a).any() or (a < 0).any():
            raise ValueError(f"{p}: nồng độ âm hoặc vô hạn (negative or infinite concentration)")
        out[p] = a
    return max(n, 0), out


def _pack(
    parsed: Sequence[tuple[int, dict[str, FloatArray]]], offsets: Sequence[int], total: int
) -> dict[str, FloatArray]:
    big: dict[str, FloatArray] = {}
    for (n, xs), o in zip(parsed, offsets, strict=True):
        for p, x in xs.items():
            if p not in big:
                big[p] = np.full(total, np.nan)
            big[p][o : o + n] = x
    return big


def _nowcast_fallback(x: FloatArray) -> Callable[[int], Fraction | None]:
    return lambda i: _nowcast_exact(list(x[max(0, i - NOWCAST_HOURS + 1) : i + 1][::-1]))


def hourly_aqi_batch(stations: Sequence[StationArrays]) -> list[HourlyTable]:
    """Hourly VN_AQI of many stations at once; each item is ``(start, arrays)`` as for ``hourly_aqi_arrays``."""
    parsed = [_as_arrays(arrays) for _, arrays in stations]
    offsets: list[int] = []
    pos = 0
    for n, _ in parsed:
        pos += NOWCAST_HOURS  # a gap of missing hours keeps NowCast windows inside their station
        offsets.append(pos)
        pos += n
    big = _pack(parsed, offsets, pos)
    raw = np.full((pos, len(POLLUTANTS)), np.nan)
    sub = np.full((pos, len(POLLUTANTS)), -1, dtype=np.int64)
    has_data = np.zeros(pos, dtype=bool)
    for j, p in enumerate(POLLUTANTS):
        if p not in big:
            continue
        x = big[p]
        has_data |= ~np.isnan(x)
        table = TABLES[_HOURLY_TABLE[p]]
        if p in PM:
            none = np.zeros(pos, dtype=np.int64)
            conc = _Conc(_nowcast_array(x), none, none + 1, np.zeros(pos, dtype=bool))
            fallback = _exact_fallback(table, _nowcast_fallback(x))
        else:
            conc = _direct(x)
            fallback = _value_fallback(table, x)
        raw[:, j], sub[:, j] = _sub_indices(table, conc, fallback)
    aqi, dominant = _combine(raw, sub)
    return [
        HourlyTable(aqi[o : o + n], dominant[o : o + n], sub[o : o + n], has_data[o : o + n], start)
        for (start, _), (n, _), o in zip(stations, parsed, offsets, strict=True)
    ]


def hourly_aqi_arrays(start: datetime, arrays: Mapping[str, Any]) -> HourlyTable:
    """Hourly VN_AQI of consecutive hours; ``arrays[p][k]`` is the mean of the hour ending ``start + k h``.

    Arrays are µg/m³ with NaN (or None in lists) for missing hours; pollutants may be left out.
    """
    return hourly_aqi_batch([(start, arrays)])[0]


def _local_start(start: datetime, n: int, tz: tzinfo) -> datetime:
    if start.tzinfo is None:
        raise ValueError("thời gian phải có múi giờ (times must be timezone-aware)")
    local = start.astimezone(tz)
    if (local.minute, local.second, local.microsecond) != (0, 0, 0):
        raise ValueError("thời gian phải tròn giờ theo giờ địa phương (times must be on the local hour)")
    if local.utcoffset() != (start + max(n - 1, 0) * HOUR).astimezone(tz).utcoffset():
        raise ValueError("múi giờ đổi độ lệch UTC trong chuỗi (the timezone changes its UTC offset)")
    return local


def _day_max(g: FloatArray) -> FloatArray:
    m = np.where(np.isnan(g), -np.inf, g).max(axis=1)
    out: FloatArray = np.where(np.isinf(m), np.nan, m)
    return out


def _pm_daily(x: FloatArray) -> tuple[_Conc, Callable[[int], Fraction | None]]:
    g = x.reshape(-1, 24)
    present = ~np.isnan(g)
    count = present.sum(axis=1)
    total = np.where(present, g, 0.0).sum(axis=1)
    mean = np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
    m, ok = _decimals(x)
    day_ok = (ok | np.isnan(x)).reshape(-1, 24).all(axis=1) & (count > 0)  # missing hours do not spoil a day
    num = np.where(present, m.reshape(-1, 24), 0).sum(axis=1)
    conc = _Conc(mean, num, np.maximum(count, 1) * _SCALE, day_ok)

    def fallback(d: int) -> Fraction | None:
        values = [_q(v) for v in g[d] if not math.isnan(v)]
        return sum(values, Fraction(0)) / len(values) if values else None

    return conc, fallback


def _max_daily(x: FloatArray) -> _Conc:
    g = x.reshape(-1, 24)
    return _direct(_day_max(g))


def _o3_8h_daily(x: FloatArray) -> tuple[_Conc, Callable[[int], Fraction | None]]:
    """The day's largest full 8-hour mean (NaN when none, or when it is above 400 µg/m³)."""
    n = len(x)
    m, ok = _decimals(x)
    sums = np.full(n, np.nan)
    isums = np.zeros(n, dtype=np.int64)
    exact = np.zeros(n, dtype=bool)
    if n >= O3_8H_HOURS:
        sums[O3_8H_HOURS - 1 :] = np.lib.stride_tricks.sliding_window_view(x, O3_8H_HOURS).sum(axis=1)
        isums[O3_8H_HOURS - 1 :] = np.lib.stride_tricks.sliding_window_view(m, O3_8H_HOURS).sum(axis=1)
        exact[O3_8H_HOURS - 1 :] = np.lib.stride_tricks.sliding_window_view(ok, O3_8H_HOURS).all(axis=1)
    full = ~np.isnan(sums)
    means = sums / O3_8H_HOURS
    g_mean = means.reshape(-1, 24)
    g_full = full.reshape(-1, 24)
    day_has = g_full.any(axis=1)
    day_exact = day_has & (exact.reshape(-1, 24) | ~g_full).all(axis=1)
    best_int = np.where(g_full & exact.reshape(-1, 24), isums.reshape(-1, 24), -1).max(axis=1)
    best = _day_max(g_mean)
    limit = int(O3_8H_LIMIT) * O3_8H_HOURS * _SCALE
    over = np.where(day_exact, best_int > limit, best > float(O3_8H_LIMIT))
    for d in np.flatnonzero(day_has & ~day_exact & (np.abs(best - float(O3_8H_LIMIT)) < _TIE)):
        m8 = _max8_exact(x, int(d) * 24, int(d) * 24 + 23)
        over[d] = m8 is None or m8 > O3_8H_LIMIT
        best[d] = math.nan if m8 is None else float(m8)
    value = np.where(over, np.nan, best)
    conc = _Conc(value, best_int, np.full(len(value), O3_8H_HOURS * _SCALE, dtype=np.int64), day_exact & ~over)

    def fallback(d: int) -> Fraction | None:
        return _max8_exact(x, d * 24, d * 24 + 23)

    return conc, fallback


def _value_fallback(table: _Table, c: FloatArray) -> Callable[[int], Fraction | None]:
    return lambda i: _sub_exact(table, _q(c[i]))


def _exact_fallback(table: _Table, conc: Callable[[int], Fraction | None]) -> Callable[[int], Fraction | None]:
    def fallback(i: int) -> Fraction | None:
        c = conc(i)
        return None if c is None else _sub_exact(table, c)

    return fallback


def daily_aqi_batch(stations: Sequence[StationArrays], tz: tzinfo = VN_TZ) -> list[DailyTable]:
    """Daily VN_AQI of many stations at once; each item is ``(start, arrays)`` as for ``daily_aqi_arrays``."""
    parsed = [_as_arrays(arrays) for _, arrays in stations]
    offsets: list[int] = []
    firsts: list[tuple[int, int, date]] = []  # (first day row, number of days, first day)
    pos = 0
    for (start, _), (n, _) in zip(stations, parsed, strict=True):
        local = _local_start(start, n, tz)
        s0 = (local.hour - 1) % 24  # slot of the first hour in its day: 01:00 → 0 … 00:00 → 23
        ndays = max(1, (s0 + n + 23) // 24)
        pos += 24  # a day of missing hours keeps 8-hour windows inside their station
        offsets.append(pos + s0)
        firsts.append((pos // 24, ndays, (local - HOUR).date()))
        pos += ndays * 24
    big = _pack(parsed, offsets, pos)
    days = pos // 24
    raw = np.full((days, len(POLLUTANTS)), np.nan)
    sub = np.full((days, len(POLLUTANTS)), -1, dtype=np.int64)
    has_data = np.zeros(days, dtype=bool)
    for j, p in enumerate(POLLUTANTS):
        if p not in big:
            continue
        x = big[p]
        has_data |= (~np.isnan(x)).reshape(-1, 24).any(axis=1)
        if p in PM:
            conc, fallback = _pm_daily(x)
            raw[:, j], sub[:, j] = _sub_indices(TABLES[p], conc, fallback)
        elif p == "o3":
            t1, t8 = TABLES["o3_1h"], TABLES["o3_8h"]
            c1 = _max_daily(x)
            raw1, sub1 = _sub_indices(t1, c1, _value_fallback(t1, c1.c))
            c8, fb8 = _o3_8h_daily(x)
            raw8, sub8 = _sub_indices(t8, c8, _exact_fallback(t8, fb8))
            raw[:, j] = np.fmax(raw1, raw8)
            sub[:, j] = np.maximum(sub1, sub8)
        else:
            conc = _max_daily(x)
            raw[:, j], sub[:, j] = _sub_indices(TABLES[p], conc, _value_fallback(TABLES[p], conc.c))
    aqi, dominant = _combine(raw, sub)
    return [
        DailyTable(aqi[r : r + k], dominant[r : r + k], sub[r : r + k], has_data[r : r + k], first)
        for r, k, first in firsts
    ]


def daily_aqi_arrays(start: datetime, arrays: Mapping[str, Any], tz: tzinfo = VN_TZ) -> DailyTable:
    """Daily VN_AQI of every local day the hours ``start``, ``start + 1 h``, … touch (see ``hourly_aqi_arrays``).

    Day D holds the hours stamped D 01:00 … D+1 00:00 in ``tz``; 8-hour O3 means reach back into
    the hours before D when the arrays hold them.
    """
    return daily_aqi_batch([(start, arrays)], tz)[0]


# --------------------------------------------------------------------------- mapping API


def _value(series: Series, t: datetime) -> float:
    return _clean(series.get(t))


def _align(series: Mapping[str, Series], extra: Iterable[datetime] = ()) -> tuple[datetime, int, list[datetime]]:
    keys = sorted({t for s in series.values() for t in s} | set(extra))
    if not keys:
        raise ValueError("không có số liệu (no data)")
    if any(t.tzinfo is None for t in keys):
        raise ValueError("thời gian phải có múi giờ (times must be timezone-aware)")
    t0 = keys[0]
    for t in keys:
        if (t - t0) % HOUR:
            raise ValueError(
                f"{t.isoformat()} không cách giờ đầu một số nguyên giờ (not a whole number of hours apart)"
            )
    n = (keys[-1] - t0) // HOUR + 1
    return t0, n, keys


def _fill(series: Mapping[str, Series], t0: datetime, n: int) -> dict[str, FloatArray]:
    unknown = set(series) - set(POLLUTANTS)
    if unknown:
        raise ValueError(f"không có thông số {sorted(unknown)} (unknown pollutants)")
    out: dict[str, FloatArray] = {}
    for p, s in series.items():
        a = np.full(n, np.nan)
        for t in s:
            a[(t - t0) // HOUR] = _value(s, t)
        out[p] = a
    return out or {"pm25": np.full(n, np.nan)}  # no pollutant at all: still n empty hours


def hourly_aqi(series: Mapping[str, Series], hour_end: datetime) -> AqiResult:
    """The hourly VN_AQI of the hour ending ``hour_end`` (NowCast uses the 11 hours before it)."""
    if hour_end.tzinfo is None:
        raise ValueError("thời gian phải có múi giờ (times must be timezone-aware)")
    t0 = hour_end - (NOWCAST_HOURS - 1) * HOUR
    arrays = {p: [_value(s, t0 + k * HOUR) for k in range(NOWCAST_HOURS)] for p, s in series.items()}
    arrays = arrays or {"pm25": [math.nan] * NOWCAST_HOURS}  # no pollutant at all: an empty series
    return hourly_aqi_arrays(t0, arrays).result(NOWCAST_HOURS - 1)


def hourly_aqi_many(series: Mapping[str, Series], hours: Iterable[datetime] | None = None) -> dict[datetime, AqiResult]:
    """Hourly VN_AQI of every hour present in ``series`` (or of ``hours``), in time order."""
    wanted = list(hours) if hours is not None else None
    if not wanted and not any(series.values()):
        return {}
    t0, n, keys = _align(series, wanted or ())
    table = hourly_aqi_arrays(t0, _fill(series, t0, n))
    return {t: table.result((t - t0) // HOUR) for t in sorted(wanted if wanted is not None else keys)}


def daily_aqi(series: Mapping[str, Series], day: date, tz: tzinfo = VN_TZ) -> AqiResult:
    """The daily VN_AQI of ``day``: hours D 01:00 … D+1 00:00 in ``tz`` (and D−1 18:00 on for O3 8 h)."""
    first = datetime.combine(day, time(1), tzinfo=tz) - (O3_8H_HOURS - 1) * HOUR
    n = 24 + O3_8H_HOURS - 1
    arrays = {p: [_value(s, first + k * HOUR) for k in range(n)] for p, s in series.items()}
    arrays = arrays or {"pm25": [math.nan] * n}
    table = daily_aqi_arrays(first, arrays, tz)
    return table.result((day - table.first_day).days)


def daily_aqi_many(
    series: Mapping[str, Series], days: Iterable[date] | None = None, tz: tzinfo = VN_TZ
) -> dict[date, AqiResult]:
    """Daily VN_AQI of every local day with at least one measured value in ``series`` (or of ``days``)."""
    wanted = sorted(days) if days is not None else None
    extra: list[datetime] = []
    for d in wanted or ():
        first = datetime.combine(d, time(1), tzinfo=tz)
        extra += [first - (O3_8H_HOURS - 1) * HOUR, first + 23 * HOUR]  # D-1 18:00 and D+1 00:00
    if not extra and not any(series.values()):
        return {}
    t0, n, _ = _align(series, extra)
    table = daily_aqi_arrays(t0, _fill(series, t0, n), tz)
    if wanted is None:
        return {table.day(i): table.result(i) for i in range(len(table)) if table.has_data[i]}
    return {d: table.result((d - table.first_day).days) for d in wanted}
