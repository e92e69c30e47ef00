"""VN_WQI against the formulas of QĐ 1460/QĐ-TCMT, with hand-computed cases.

The decision's worked example prints 16 and 19; its own formulas give 34.6 and 40.4 from its
printed sub-indices (README of the reference data), so the tests follow the formulas.
"""

from __future__ import annotations

import math

import pytest

from ioc.modules.environment.wqi import REASONS, band_for, canonical_key, do_saturation, sub_index, wqi

EXAMPLE = {
    "ph": 7.2,
    "cu": 0.05,
    "as": 0.02,
    "temp": 27.5,
    "do": 5.7,
    "bod5": 20.0,
    "cod": 25.0,
    "nh4": 0.2,
    "po4": 0.3,
    "aldrin": 0.05,
    "dieldrin": 0.05,
    "coliform": 10_000,
}


def test_worked_example_sub_indices() -> None:
    assert sub_index("ph", 7.2) == 100
    assert sub_index("cu", 0.05) == 100
    assert sub_index("as", 0.02) == 75
    assert sub_index("bod5", 20) == pytest.approx((50 - 25) / (25 - 15) * (25 - 20) + 25)  # 37.5
    assert sub_index("cod", 25) == pytest.approx((75 - 50) / (30 - 15) * (30 - 25) + 50)  # 58.3
    assert sub_index("nh4", 0.2) == 100
    assert sub_index("po4", 0.3) == 50
    assert sub_index("coliform", 10_000) == 25
    assert sub_index("aldrin", 0.05) == 100 and sub_index("dieldrin", 0.05) == 100
    assert sub_index("do_pct", 73.3) == pytest.approx(73.3)


def test_worked_example_by_the_formula() -> None:
    do_sat = 14.652 - 0.41022 * 27.5 + 0.0079910 * 27.5**2 - 0.000077774 * 27.5**3  # 7.797 mg/L
    assert do_saturation(27.5) == pytest.approx(do_sat)
    do_pct = 5.7 / do_sat * 100  # 73.1 %
    wqi_do = (75 - 50) / (75 - 50) * (do_pct - 50) + 50
    mean_iv = (wqi_do + 37.5 + (75 - 50) / (30 - 15) * 5 + 50 + 100 + 50) / 5
    group_iii = math.sqrt(100 * 75) / 100
    unweighted = 1 * 1 * group_iii * math.sqrt(mean_iv * 25)
    weighted = 1 * 1 * group_iii * (mean_iv**2 * 25) ** (1 / 3)
    result = wqi(EXAMPLE)
    assert result.value == pytest.approx(unweighted)
    assert result.wqi == round(unweighted) == 35  # the decision prints 16
    assert result.do_pct == pytest.approx(do_pct)
    assert result.groups["I"] == 100 and result.groups["II"] == 100
    assert result.groups["III"] == pytest.approx(math.sqrt(7500))
    assert result.groups["IV"] == pytest.approx(mean_iv) and result.groups["V"] == 25
    assert result.band is not None and result.band.name_vi == "Xấu" and result.band.colour == "#ff7e00"
    heavy = wqi(EXAMPLE, weighted=True)
    assert heavy.value == pytest.approx(weighted) and heavy.wqi == 40  # the decision prints 19
    # with the decision's rounded DO % (73.3) the formula gives 34.6 and 40.4
    printed = {**{k: v for k, v in EXAMPLE.items() if k not in ("do", "temp")}, "do_pct": 73.3}
    assert wqi(printed).value == pytest.approx(34.6, abs=0.05)
    assert wqi(printed, weighted=True).value == pytest.approx(40.4, abs=0.05)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("bod5", 4, 100),
        ("bod5", 3.9, 100),
        ("bod5", 5, 87.5),
        ("bod5", 6, 75),
        ("bod5", 50, 10),
        ("bod5", 37.5, 17.5),
        ("bod5", 80, 10),
        ("cod", 150, 10),
        ("cod", 100, 17.5),
        ("toc", 15, 50),
        ("nh4", 0.29, 100),
        ("nh4", 0.3, 75),  # "<0,3" then "0,3": the jump of the table
        ("nh4", 0.45, 62.5),
        ("nh4", 5, 10),
        ("no3", 2, 100),
        ("no3", 15, 25),
        ("no3", 15.01, 10),  # ">15"
        ("no2", 0.05, 100),
        ("no2", 0.051, 10),
        ("po4", 4, 10),
        ("po4", 2.25, 17.5),
        ("coliform", 2500, 100),
        ("coliform", 3750, 87.5),
        ("coliform", 10_001, 10),
        ("ecoli", 20, 100),
        ("ecoli", 200, 25),
        ("ecoli", 201, 10),
        ("as", 0.1, 25),
        ("as", 0.11, 10),
        ("cd", 0.004, 100),
        ("cd", 0.005, 75),
        ("cd", 0.1, 10),
        ("cd", 0.055, 17.5),
        ("pb", 0.03, 62.5),
        ("hg", 0.0009, 100),
        ("hg", 0.001, 75),
        ("hg", 0.01, 10),
        ("cr6", 0.075, 17.5),
        ("cu", 1.5, 17.5),
        ("zn", 0.75, 87.5),
        ("zn", 3, 10),
        ("do_pct", 19.9, 10),
        ("do_pct", 20, 25),
        ("do_pct", 35, 37.5),
        ("do_pct", 88, 100),
        ("do_pct", 100, 100),
        ("do_pct", 112, 100),
        ("do_pct", 118.5, 87.5),
        ("do_pct", 175, 37.5),
        ("do_pct", 200, 25),
        ("do_pct", 200.1, 10),
        ("ph", 5.4, 10),
        ("ph", 5.5, 50),
        ("ph", 5.75, 75),
        ("ph", 6, 100),
        ("ph", 8.5, 100),
        ("ph", 8.75, 75),
        ("ph", 9, 50),
        ("ph", 9.1, 10),
        ("aldrin", 0.1, 100),
        ("aldrin", 0.11, 10),
        ("bhc", 0.02, 100),
        ("bhc", 0.021, 10),
        ("ddts", 1.0, 100),
        ("heptachlor", 0.3, 10),
    ],
)
def test_sub_index_tables(key: str, value: float, expected: float) -> None:
    assert sub_index(key, value) == pytest.approx(expected)


def test_formula_without_group_v_and_rounding_half_up() -> None:
    # I: pH 7 → 100; III: Cu 0.1 → 100; IV: 75, 50, 75, 50 → 62.5; no group V → Công thức 4
    sample = {"ph": 7, "cu": 0.1, "bod5": 6, "cod": 30, "toc": 6, "po4": 0.3}
    result = wqi(sample)
    assert result.value == pytest.approx(62.5) and result.wqi == 63
    assert result.groups["V"] is None
    assert wqi(sample, weighted=True).wqi == 63  # Công thức 5 needs group V: Công thức 4 again
    # group factors multiply: pH 9 → 50, As 0.05 and Cd 0.008 → 50 and 50
    sample = {"ph": 9, "as": 0.05, "cd": 0.008, "bod5": 4, "cod": 10, "nh4": 0.1, "ecoli": 50}
    # 0.5 · (50·50)^(1/2)/100 · (100 · 75)^(1/2) = 0.25 · 86.60 = 21.65
    result = wqi(sample)
    assert result.value == pytest.approx(0.5 * 0.5 * math.sqrt(100 * 75))
    assert result.wqi == 22 and result.band is not None and result.band.name_vi == "Kém"
    assert wqi(sample, weighted=True).value == pytest.approx(0.25 * (100**2 * 75) ** (1 / 3))


def test_minimum_data_rule() -> None:
    two_iv = {"ph": 7, "cu": 0.1, "coliform": 100, "bod5": 3, "cod": 5}
    result = wqi(two_iv)
    assert result.wqi is None and result.reason == "group_iv_too_few" and result.band is None
    only_two_groups = {"ph": 7, "bod5": 3, "cod": 5, "do_pct": 95}
    assert wqi(only_two_groups).reason == "too_few_groups"
    assert wqi({**only_two_groups, "ecoli": 10}).wqi == 100
    enough = {"ph": 7, "ecoli": 10, "bod5": 3, "cod": 5, "do_pct": 95}
    assert wqi(enough, pesticides=True).reason == "group_ii_required"
    assert wqi(enough, heavy_metals=True).reason == "group_iii_required"
    assert wqi({**enough, "aldrin": 0.01, "zn": 0.1}, pesticides=True, heavy_metals=True).wqi == 100
    assert wqi({}).reason == "group_iv_too_few"
    assert set(REASONS) == {"group_iv_too_few", "too_few_groups", "group_ii_required", "group_iii_required"}


def test_bands() -> None:
    expected = [
        (91, 100, "Rất tốt", "#3333ff"),
        (76, 90, "Tốt", "#00e400"),
        (51, 75, "Trung bình", "#ffff00"),
        (26, 50, "Xấu", "#ff7e00"),
        (10, 25, "Kém", "#ff0000"),
        (0, 9, "Ô nhiễm rất nặng", "#7e0023"),
    ]
    for low, high, name, colour in expected:
        for value in (low, high):
            band = band_for(value)
            assert (band.name_vi, band.colour, band.low, band.high) == (name, colour, low, high)
            assert band.use_vi and band.use_en and band.name_en
    assert band_for(40).table7_name_vi == "Kém"
    with pytest.raises(ValueError):
        band_for(101)


def test_input_checks_and_names() -> None:
    with pytest.raises(ValueError, match="temperature"):
        wqi({"ph": 7, "do": 6, "bod5": 3, "cod": 5, "ecoli": 1})
    with pytest.raises(ValueError, match="unknown"):
        wqi({"ph": 7, "lead": 1})
    with pytest.raises(ValueError, match="pH"):
        wqi({"ph": 15})
    with pytest.raises(ValueError, match="negative"):
        wqi({"bod5": -1})
    # the decision's names work as keys too
    named = {"pH": 7.2, "Cu": 0.05, "As": 0.02, "temperature": 27.5, "DO": 5.7, "BOD5": 20.0, "COD": 25.0}
    named |= {"N-NH4": 0.2, "P-PO4": 0.3, "Aldrin": 0.05, "Dieldrin": 0.05, "Coliform": 10_000}
    assert wqi(named) == wqi(EXAMPLE)
    assert canonical_key("E.coli") == "ecoli" and canonical_key("Cr6+") == "cr6" and canonical_key("x") is None
    assert wqi({**EXAMPLE, "ecoli": None}).wqi == 35  # None = not measured
    # do_pct given: used as is, DO in mg/L ignored
    assert wqi({**EXAMPLE, "do_pct": 100}).sub_indices["do"] == 100
