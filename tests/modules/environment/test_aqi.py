"""VN_AQI against QĐ 1459/QĐ-TCMT: its worked examples, its tables' edges, its rules.

An independent reference (exact fractions, straight from the decision's text and Bảng 2, typed
here rather than read from the module's data file) checks the vectorised engine on random data.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import numpy as np
import pytest

from ioc.modules.environment import aqi
from ioc.modules.environment.aqi import (
    POLLUTANTS,
    VN_TZ,
    band_for,
    daily_aqi,
    daily_aqi_batch,
    daily_aqi_many,
    hourly_aqi,
    hourly_aqi_batch,
    hourly_aqi_many,
    nowcast,
    sub_index,
)

H = timedelta(hours=1)

# Bảng 2 of the decision, µg/m³ (CO too), index levels 0 50 100 150 200 300 400 500
LEVELS = [0, 50, 100, 150, 200, 300, 400, 500]
BP = {
    "o3_1h": [0, 160, 200, 300, 400, 800, 1000, 1200],
    "o3_8h": [0, 100, 120, 170, 210, 400],
    "co": [0, 10_000, 30_000, 45_000, 60_000, 90_000, 120_000, 150_000],
    "so2": [0, 125, 350, 550, 800, 1600, 2100, 2630],
    "no2": [0, 100, 200, 700, 1200, 2350, 3100, 3850],
    "pm10": [0, 50, 150, 250, 350, 420, 500, 600],
    "pm25": [0, 25, 50, 80, 150, 250, 350, 500],
}
HOURLY = {"pm25": "pm25", "pm10": "pm10", "o3": "o3_1h", "no2": "no2", "so2": "so2", "co": "co"}


# --------------------------------------------------------------------------- the reference


def ref_sub(table: str, c: Fraction) -> Fraction | None:
    bps = BP[table]
    if table == "o3_8h" and c > 400:
        return None
    if len(bps) == 8 and c >= bps[-1]:
        return Fraction(500)
    for i in range(len(bps) - 1):
        if bps[i] <= c <= bps[i + 1]:
            return LEVELS[i] + Fraction(LEVELS[i + 1] - LEVELS[i], bps[i + 1] - bps[i]) * (c - bps[i])
    raise AssertionError(c)


def ref_nowcast(newest_first: list[Fraction | None]) -> Fraction | None:
    c = (newest_first + [None] * 12)[:12]
    if sum(v is not None for v in c[:3]) < 2:
        return None
    present = [v for v in c if v is not None]
    cmin, cmax = min(present), max(present)
    if cmax == 0:
        return Fraction(0)
    w = max(cmin / cmax, Fraction(1, 2))
    if w == Fraction(1, 2):  # the decision's formula for w = 1/2, missing terms weighted 0
        return sum((Fraction(1, 2) ** (i + 1) * v for i, v in enumerate(c) if v is not None), Fraction(0))
    num = sum((w**i * v for i, v in enumerate(c) if v is not None), Fraction(0))
    return num / sum((w**i for i, v in enumerate(c) if v is not None), Fraction(0))


def ref_pick(subs: dict[str, Fraction]) -> tuple[int | None, str | None, dict[str, int]]:
    rounded = {p: math.floor(v + Fraction(1, 2)) for p, v in subs.items()}
    if "pm25" not in subs and "pm10" not in subs:
        return None, None, rounded
    top = max(subs.values())
    dominant = next(p for p in POLLUTANTS if p in subs and subs[p] == top)
    return math.floor(top + Fraction(1, 2)), dominant, rounded


Data = dict[str, dict[datetime, Fraction]]


def ref_hourly(data: Data, h: datetime) -> tuple[int | None, str | None, dict[str, int]]:
    subs: dict[str, Fraction] = {}
    for p, series in data.items():
        c = ref_nowcast([series.get(h - k * H) for k in range(12)]) if p in ("pm25", "pm10") else series.get(h)
        if c is not None:
            v = ref_sub(HOURLY[p], c)
            assert v is not None
            subs[p] = v
    return ref_pick(subs)


def ref_daily(data: Data, day: date) -> tuple[int | None, str | None, dict[str, int]]:
    first = datetime(day.year, day.month, day.day, 1, tzinfo=VN_TZ)
    hours = [first + k * H for k in range(24)]
    subs: dict[str, Fraction] = {}
    for p, series in data.items():
        vals = [series[h] for h in hours if h in series]
        if not vals:
            continue
        if p in ("pm25", "pm10"):
            v = ref_sub(p, Fraction(sum(vals, Fraction(0)), len(vals)))
        elif p == "o3":
            v = ref_sub("o3_1h", max(vals))
            means: list[Fraction] = []
            for h in hours:
                window = [series[h - k * H] for k in range(8) if h - k * H in series]
                if len(window) == 8:
                    means.append(sum(window, Fraction(0)) / 8)
            if means and max(means) <= 400:
                v8 = ref_sub("o3_8h", max(means))
                assert v is not None and v8 is not None
                v = max(v, v8)
        else:
            v = ref_sub(p, max(vals))
        assert v is not None
        subs[p] = v
    return ref_pick(subs)


def _floats(data: Data) -> dict[str, dict[datetime, float | None]]:
    return {p: {t: float(v) for t, v in s.items()} for p, s in data.items()}


# --------------------------------------------------------------------------- worked examples (§2.3)

EXAMPLE_PM25 = [26.9, 24.7, 20.5, 23.5, 19.5, 16.5, 19.0, 16.5, 20.3, 22.4, 19.6, 20.6]  # 09:00 … 20:00


def test_nowcast_worked_example() -> None:
    # w* = 16.5 / 26.9 = 0.61 > 1/2, so w = w*; the decision prints 20.3, the formula gives 20.27
    value = nowcast(EXAMPLE_PM25[::-1])
    assert value is not None
    assert round(value, 2) == 20.27
    exact = ref_nowcast([Fraction(str(v)) for v in EXAMPLE_PM25[::-1]])
    assert exact is not None and abs(value - float(exact)) < 1e-12


def test_hourly_worked_example_uses_the_formula_not_the_misprint() -> None:
    assert sub_index("o3", 136.1, "1h") == 43
    assert sub_index("no2", 118.7, "1h") == 59  # printed 60; (100-50)/(200-100)·18.7 + 50 = 59.35
    assert sub_index("pm25", 20.3, "1h") == 41
    t0 = datetime(2019, 11, 12, 9, tzinfo=VN_TZ)
    end = t0 + 11 * H  # 20:00
    series = {
        "pm25": {t0 + k * H: v for k, v in enumerate(EXAMPLE_PM25)},
        "o3": {end: 136.1},
        "no2": {end: 118.7},
    }
    result = hourly_aqi(series, end)
    assert result.aqi == 59 and result.dominant == "no2"
    assert result.sub_indices == {"pm25": 41, "o3": 43, "no2": 59}
    assert result.band is not None and result.band.name_vi == "Trung bình" and result.band.colour == "#ffff00"


def test_daily_worked_example() -> None:
    assert sub_index("o3", 89.3, "8h") == 45
    assert sub_index("o3", 114.6, "1h") == 36
    assert sub_index("no2", 130.8, "1h") == 65
    assert sub_index("pm25", 55.7, "24h") == 110  # 109.5 rounded half-up
    # a day whose figures are those of the example: PM2.5 24-h mean 55.7, O3 max 1 h 114.6 and
    # max 8 h 89.3, NO2 max 1 h 130.8
    day = date(2019, 11, 12)
    first = datetime(2019, 11, 12, 1, tzinfo=VN_TZ)
    hours = [first + k * H for k in range(24)]
    o3 = dict.fromkeys(hours, 50.0)
    for h in hours[:8]:
        o3[h] = 89.3  # the 8-hour mean stamped 08:00
    o3[hours[19]] = 114.6  # 20:00, its windows stay below 89.3
    series = {
        "pm25": dict.fromkeys(hours, 55.7),
        "o3": o3,
        "no2": {h: (130.8 if k == 5 else 80.0) for k, h in enumerate(hours)},
    }
    result = daily_aqi(series, day)
    assert result.aqi == 110 and result.dominant == "pm25"
    assert result.sub_indices == {"pm25": 110, "o3": 45, "no2": 65}
    assert result.band is not None and result.band.name_vi == "Kém"


def test_o3_8h_means_follow_the_decision_example() -> None:
    # the decision's O3 table, 18:00 of the day before to 00:00; its largest 8-hour mean is 74.4
    # (exactly 74.3875, stamped 17:00), above the 1-hour table's sub-index of the 97.7 maximum
    o3 = [15.7, 14.2, 17.7, 18.9, 19.3, 15.7, 19.7, 22.6, 27.1, 29.0, 31.9, 25.3, 34.7, 35.2, 41.6, 45.7]
    o3 += [49.2, 55.8, 69.6, 78.3, 91.5, 97.7, 81.2, 71.8, 43.5, 34.3, 21.5, 20.5, 19.4, 20.4, 21.3]
    start = datetime(2019, 11, 11, 18, tzinfo=VN_TZ)
    series = {"o3": {start + k * H: v for k, v in enumerate(o3)}, "pm10": {start + 10 * H: 1.0}}
    result = daily_aqi(series, date(2019, 11, 12))
    assert sub_index("o3", 97.7, "1h") == 31
    assert sub_index("o3", 74.3875, "8h") == 37
    assert result.sub_indices["o3"] == 37


def test_o3_8h_window_reaches_into_the_day_before() -> None:
    # the largest 8-hour mean of day D is stamped D 03:00 and covers D-1 20:00 … D 03:00
    start = datetime(2024, 5, 1, 20, tzinfo=VN_TZ)
    o3 = {start + k * H: 150.0 for k in range(8)}  # D-1 20:00 … D 03:00
    o3.update({start + k * H: 10.0 for k in range(8, 29)})  # … D+1 00:00
    series = {"o3": o3, "pm25": {start + 10 * H: 1.0}}
    result = daily_aqi(series, date(2024, 5, 2))
    assert result.sub_indices["o3"] == sub_index("o3", 150.0, "8h") == 130
    # without the day before, the same day only has short windows at its start
    series["o3"] = {t: v for t, v in o3.items() if t >= datetime(2024, 5, 2, 1, tzinfo=VN_TZ)}
    later = daily_aqi(series, date(2024, 5, 2))
    assert later.sub_indices["o3"] == sub_index("o3", 150.0, "1h") == 47


def test_o3_8h_above_400_is_dropped() -> None:
    first = datetime(2024, 5, 2, 1, tzinfo=VN_TZ)
    hours = [first + k * H for k in range(24)]

    def o3_sub(level: float) -> int:
        result = daily_aqi({"o3": dict.fromkeys(hours, level), "pm25": dict.fromkeys(hours, 1.0)}, date(2024, 5, 2))
        return result.sub_indices["o3"]

    assert o3_sub(400.0) == 300  # "cao hơn 400" is strict: 400 itself still counts (8-hour table)
    assert o3_sub(401.0) == 200  # 8-hour part dropped; 1-hour table: 200 + (401 - 400)·100/400 = 200.25
    # a mean of exactly 400 reached through decimals floating point would put above 400
    hours_vals = [400.1, 399.9, 400.3, 399.7, 400.2, 399.8, 400.05, 399.95]
    series = {"o3": {first + k * H: v for k, v in enumerate(hours_vals)}, "pm25": {first: 1.0}}
    assert daily_aqi(series, date(2024, 5, 2)).sub_indices["o3"] == 300
    with pytest.raises(ValueError, match="400"):
        sub_index("o3", 400.5, "8h")


# --------------------------------------------------------------------------- tables, edges, cap, rounding


@pytest.mark.parametrize("table", sorted(BP))
def test_every_breakpoint_gives_its_level(table: str) -> None:
    pollutant, averaging = {
        "o3_1h": ("o3", "1h"),
        "o3_8h": ("o3", "8h"),
        "co": ("co", "1h"),
        "so2": ("so2", "1h"),
        "no2": ("no2", "1h"),
        "pm10": ("pm10", "24h"),
        "pm25": ("pm25", "24h"),
    }[table]
    for bp, level in zip(BP[table], LEVELS, strict=False):
        assert sub_index(pollutant, bp, averaging) == level
    if len(BP[table]) == 8:  # "≥" top breakpoint: capped at 500, never extrapolated
        top = BP[table][-1]
        assert sub_index(pollutant, top * 1.5, averaging) == 500
        assert sub_index(pollutant, top * 100, averaging) == 500
        assert sub_index(pollutant, top - 0.01, averaging) == 500  # 499.99…
        assert sub_index(pollutant, top * 0.9, averaging) < 500


def test_co_table_is_in_micrograms() -> None:
    assert sub_index("co", 10_000, "1h") == 50  # 10 mg/m³
    assert sub_index("co", 30_000, "1h") == 100
    assert sub_index("co", 1100, "1h") == 6  # 5.5 → 6


def test_half_up_on_the_exact_value() -> None:
    assert sub_index("pm25", 25.25, "24h") == 51  # 50.5
    assert sub_index("pm25", 25.24, "24h") == 50
    assert sub_index("pm10", 0.5, "24h") == 1  # 0.5 → 1, not banker's 0
    assert sub_index("no2", 101, "1h") == 51  # 50.5
    # PM10 352.45: 200 + (300 - 200)/(420 - 350)·2.45 = 203.5 exactly; the formula evaluated in
    # binary floating point gives 203.49999999999997
    assert (300 - 200) / (420 - 350) * (352.45 - 350) + 200 < 203.5
    assert sub_index("pm10", 352.45, "24h") == 204
    hours = [datetime(2024, 1, 1, 1, tzinfo=VN_TZ) + k * H for k in range(24)]
    assert daily_aqi({"pm10": dict.fromkeys(hours, 352.45)}, date(2024, 1, 1)).aqi == 204
    assert hourly_aqi({"pm10": dict.fromkeys(hours, 352.45)}, hours[-1]).aqi == 204  # NowCast, w = 1
    assert hourly_aqi({"pm10": {hours[0]: 1.0, hours[1]: 1.0}, "so2": {hours[1]: 1.25}}, hours[1]).sub_indices == {
        "pm10": 1,
        "so2": 1,  # 0.5
    }


def test_band_edges_and_colours() -> None:
    expected = [
        (0, 50, "Tốt", "#00e400"),
        (51, 100, "Trung bình", "#ffff00"),
        (101, 150, "Kém", "#ff7e00"),
        (151, 200, "Xấu", "#ff0000"),
        (201, 300, "Rất xấu", "#8f3f97"),
        (301, 500, "Nguy hại", "#7e0023"),
    ]
    for level, (low, high, name, colour) in enumerate(expected, start=1):
        for value in (low, high):
            band = band_for(value)
            assert (band.level, band.name_vi, band.colour, band.low, band.high) == (level, name, colour, low, high)
            assert band.name_en and band.advice_vi and band.advice_en and band.health_vi and band.sensitive_vi
    assert band_for(150).name_en == "Poor"
    with pytest.raises(ValueError):
        band_for(501)
    with pytest.raises(ValueError):
        band_for(-1)


def test_sub_index_refuses_what_the_decision_does_not_define() -> None:
    with pytest.raises(ValueError):
        sub_index("no2", 50, "8h")
    with pytest.raises(ValueError):
        sub_index("so2", 50, "24h")
    with pytest.raises(ValueError):
        sub_index("pm1", 5, "1h")
    with pytest.raises(ValueError):
        sub_index("pm25", -1, "1h")


# --------------------------------------------------------------------------- NowCast and missing data


def test_nowcast_missing_data_rule() -> None:
    assert nowcast([10.0, 12.0]) is not None
    assert nowcast([None, 12.0, 14.0]) is not None  # c1 missing, c2 and c3 present
    assert nowcast([10.0, None, 14.0]) is not None
    assert nowcast([10.0, None, None, 12.0, 12.0]) is None  # only 1 of the last 3 hours
    assert nowcast([None, None, 12.0] + [12.0] * 9) is None
    assert nowcast([10.0]) is None
    assert nowcast([]) is None


def test_nowcast_weights() -> None:
    # w* = 10/12 > 1/2: normalised weights, the missing c2 weighted 0
    w = 10 / 12
    assert nowcast([10.0, None, 12.0]) == pytest.approx((10 + w**2 * 12) / (1 + w**2))
    # w* = 1/2 exactly: the decision's formula Σ (1/2)^i·ci, as printed
    assert nowcast([10.0, 20.0]) == pytest.approx(0.5 * 10 + 0.25 * 20)
    # w* < 1/2 → w = 1/2, missing terms contribute nothing
    assert nowcast([10.0, None, 40.0]) == pytest.approx(0.5 * 10 + 0.125 * 40)
    assert nowcast([0.0, 0.0, 0.0]) == 0.0
    assert nowcast([5.0] * 12) == pytest.approx(5.0)
    with pytest.raises(ValueError):
        nowcast([1.0] * 13)


def test_no_pm_no_aqi() -> None:
    t = datetime(2024, 1, 1, 10, tzinfo=VN_TZ)
    result = hourly_aqi({"o3": {t: 150.0}, "no2": {t: 150.0}}, t)
    assert result.aqi is None and result.dominant is None and result.band is None
    assert result.sub_indices == {"o3": 47, "no2": 75}
    # PM present but its NowCast missing (only one of the last three hours)
    result = hourly_aqi({"pm25": {t: 30.0}, "o3": {t: 150.0}}, t)
    assert result.aqi is None and result.sub_indices == {"o3": 47}
    assert hourly_aqi({"pm25": {t: 10.0, t - H: 10.0}, "o3": {t: 150.0}}, t).aqi == 47  # PM2.5 20 < O3 47


def test_dominant_ties() -> None:
    t = datetime(2024, 1, 1, 10, tzinfo=VN_TZ)
    # exact tie 50 = 50: the first in POLLUTANTS order
    tie = {"pm10": {t: 50.0, t - H: 50.0}, "pm25": {t: 25.0, t - H: 25.0}, "no2": {t: 100.0}}
    result = hourly_aqi(tie, t)
    assert result.aqi == 50 and result.dominant == "pm25"
    # both round to 60, NO2 is higher before rounding (60.45 > 60.4)
    day = date(2024, 1, 1)
    hours = [datetime(2024, 1, 1, 1, tzinfo=VN_TZ) + k * H for k in range(24)]
    result = daily_aqi({"pm25": dict.fromkeys(hours, 30.2), "no2": {hours[3]: 120.9}}, day)
    assert result.sub_indices == {"pm25": 60, "no2": 60}
    assert result.aqi == 60 and result.dominant == "no2"


# --------------------------------------------------------------------------- day boundaries, time zones, batch API


def test_day_is_0100_to_0000_local() -> None:
    d = date(2024, 3, 10)
    midnight = datetime(2024, 3, 10, 0, tzinfo=VN_TZ)  # stamped D 00:00: the hour 23-24 of D-1
    series = {"pm25": {midnight: 100.0, midnight + H: 10.0, midnight + 24 * H: 30.0}}
    days = daily_aqi_many(series)
    assert sorted(days) == [date(2024, 3, 9), d]
    assert days[date(2024, 3, 9)].sub_indices["pm25"] == sub_index("pm25", 100, "24h")
    assert days[d].sub_indices["pm25"] == sub_index("pm25", 20, "24h")  # mean of 10 (01:00) and 30 (D+1 00:00)
    # the same instants written in UTC give the same days
    utc = {"pm25": {t.astimezone(UTC): v for t, v in series["pm25"].items()}}
    assert daily_aqi_many(utc) == days
    assert daily_aqi(utc, d) == days[d]


def test_many_equals_one_by_one() -> None:
    rnd = random.Random(3)
    t0 = datetime(2024, 6, 1, 0, tzinfo=UTC)
    series: dict[str, dict[datetime, float | None]] = {
        p: {t0 + k * H: (None if rnd.random() < 0.15 else round(rnd.uniform(0, 200), 1)) for k in range(60)}
        for p in POLLUTANTS
    }
    many = hourly_aqi_many(series)
    assert len(many) == 60
    for t in list(many)[::7]:
        assert many[t] == hourly_aqi(series, t)
    days = daily_aqi_many(series)
    for d, result in days.items():
        assert result == daily_aqi(series, d)
    chosen = [t0 + 30 * H, t0 + 5 * H]
    assert list(hourly_aqi_many(series, chosen)) == sorted(chosen)
    assert hourly_aqi_many({}) == {} and daily_aqi_many({"pm25": {}}) == {}
    assert daily_aqi_many({}, [date(2024, 6, 1)])[date(2024, 6, 1)].aqi is None


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        hourly_aqi({"pm25": {datetime(2024, 1, 1, 1): 1.0}}, datetime(2024, 1, 1, 1))
    with pytest.raises(ValueError):
        hourly_aqi_many({"pm25": {datetime(2024, 1, 1, 1): 1.0}})
    with pytest.raises(ValueError):
        hourly_aqi({"pm25": {datetime(2024, 1, 1, 1, tzinfo=UTC): -1.0}}, datetime(2024, 1, 1, 1, tzinfo=UTC))


def _random_data(rnd: random.Random, start: datetime, hours: int, step: str) -> Data:
    """Hourly values on a coarse grid (many exact halves and ties), 12 % missing, gaps of several hours."""
    scale = {"pm25": 120, "pm10": 200, "o3": 450, "no2": 400, "so2": 300, "co": 40_000}
    data: Data = {}
    gap = set(rnd.sample(range(hours), 6))
    for p in POLLUTANTS:
        data[p] = {}
        for k in range(hours):
            if k in gap or rnd.random() < 0.12:
                continue
            v = Fraction(rnd.randint(0, int(scale[p] / float(step)))) * Fraction(step)
            data[p][start + k * H] = v
    return data


@pytest.mark.parametrize("step", ["0.05", "0.1", "0.25", "1"])
def test_engine_agrees_with_the_exact_reference(step: str) -> None:
    rnd = random.Random(int(Fraction(step) * 100))
    n = 80
    stations = []
    for k in range(4):
        start = datetime(2024, 7, 1, 5, tzinfo=VN_TZ) + 7 * k * H
        data = _random_data(rnd, start, n, step)
        arrays = {p: np.full(n, np.nan) for p in POLLUTANTS}
        for p, series in data.items():
            for t, v in series.items():
                arrays[p][(t - start) // H] = float(v)
        stations.append((start, data, arrays))
    items = [(start, arrays) for start, _, arrays in stations]
    hourly = hourly_aqi_batch(items)
    daily = daily_aqi_batch(items)
    checked = 0
    for (t0, data, _), table, dtable in zip(stations, hourly, daily, strict=True):
        for k in range(len(table)):
            got = table.result(k)
            assert (got.aqi, got.dominant, got.sub_indices) == ref_hourly(data, t0 + k * H), t0 + k * H
            checked += 1
        for i in range(len(dtable)):
            got = dtable.result(i)
            assert (got.aqi, got.dominant, got.sub_indices) == ref_daily(data, dtable.day(i)), dtable.day(i)
        # and the mapping API agrees with the arrays
        hour = t0 + 40 * H
        assert hourly_aqi_many(_floats(data), [hour])[hour] == table.result(40)
    assert checked == 4 * n


def test_values_with_many_decimals() -> None:
    # more than 6 decimals (e.g. converted units): the floating-point path, still half-up
    for pollutant, table, value in [("pm25", "pm25", 25.2500001), ("no2", "no2", 100.99999999), ("co", "co", 1 / 3)]:
        expected = ref_sub(table, Fraction(repr(value)))
        assert expected is not None
        assert aqi.sub_index(pollutant, value, "24h" if pollutant == "pm25" else "1h") == math.floor(
            expected + Fraction(1, 2)
        )
        t = datetime(2024, 1, 1, 10, tzinfo=VN_TZ)
        series = {"pm10": {t: 1.0, t - H: 1.0}, pollutant: {t: value, t - H: value}}
        if pollutant == "pm25":  # hourly PM goes through NowCast
            expected = ref_sub(table, ref_nowcast([Fraction(repr(value))] * 2) or Fraction(0))
            assert expected is not None
        assert hourly_aqi(series, t).sub_indices[pollutant] == math.floor(expected + Fraction(1, 2))
