"""VN_WQI exactly as QĐ 1460/QĐ-TCMT (2019) defines it, for one sample of surface water.

Parameter keys and units (the decision's units):

=========================  =====  ===========================================  ==========
key                        group  parameter                                    unit
=========================  =====  ===========================================  ==========
``ph``                     I      pH                                           —
``aldrin``                 II     Aldrin                                       µg/L
``bhc``                    II     BHC (benzene hexachloride)                   µg/L
``dieldrin``               II     Dieldrin                                     µg/L
``ddts``                   II     DDTs (p,p'-DDT, p,p'-DDD, p,p'-DDE)          µg/L
``heptachlor``             II     Heptachlor & Heptachlorepoxide               µg/L
``as`` ``cd`` ``pb``       III    As, Cd, Pb                                   mg/L
``cr6`` ``cu`` ``zn``      III    Cr6+, Cu, Zn                                 mg/L
``hg``                     III    Hg                                           mg/L
``do``                     IV     dissolved oxygen, with ``temp``              mg/L
``temp``                   —      water temperature (for DO saturation)        °C
``do_pct``                 IV     DO % saturation (instead of ``do``/``temp``)  %
``bod5`` ``cod`` ``toc``   IV     BOD5, COD, TOC                               mg/L
``nh4`` ``no3`` ``no2``    IV     N-NH4, N-NO3, N-NO2 (as nitrogen)            mg/L
``po4``                    IV     P-PO4 (as phosphorus)                        mg/L
``coliform`` ``ecoli``     V      Coliform, E.coli                             MPN/100 mL
=========================  =====  ===========================================  ==========

Names as the decision writes them are accepted too (case-insensitive, punctuation ignored):
"pH", "DO", "BOD5", "N-NH4", "P-PO4", "E.coli", "Cr6+", "temperature" … (:func:`canonical_key`).

Rules (docs/ENVIRONMENT.md, section VN_WQI):

* Sub-indices (WQI_SI): Bảng 1–4 and the group II limits, by Công thức 1 (falling scales) and 2
  (rising: DO % 20–88, pH 5.5–6), which are both linear interpolation between the two nodes
  around the value. A value equal to a breakpoint takes its q. Levels written "<X" then "X"
  (N-NH4, Cd, Pb, Hg): below X → 100, at X → 75. Last levels written ">Y" with Y the level-4
  breakpoint (N-NO3, As, Coliform, E.coli): at Y → 25, above → 10. N-NO2: ≤ 0.05 → 100, else 10.
* DO: DO_sat = 14.652 − 0.41022·T + 0.0079910·T² − 0.000077774·T³ (mg/L), DO % = DO/DO_sat·100;
  nothing is rounded before the end. ``do_pct``, when given, is used as is.
* Minimum data: at least 3 of the 5 groups, group IV mandatory with at least 3 parameters; with
  ``pesticides=True`` group II and with ``heavy_metals=True`` group III are mandatory too.
  Otherwise no WQI, with ``reason`` one of :data:`REASONS`.
* VN_WQI = WQI_I/100 · (Π WQI_II)^(1/n)/100 · (Π WQI_III)^(1/m)/100 · [mean IV · mean V]^(1/2)
  (Công thức 3); without group V, · mean IV (Công thức 4); ``weighted=True`` uses Công thức 5,
  [mean IV² · mean V]^(1/3), for water bodies where organic pollution matters (without group V it
  is Công thức 4 again). A group without data contributes the factor 1 (the decision does not
  name the case: the formula's group term is left out).
* The result is rounded half-up to an integer; a computed value within 1e-9 of a half counts as
  the half (floating-point noise of the roots).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_DATA = Path(__file__).parent / "data" / "vn_wqi_qd1460.json"
GROUPS = ("I", "II", "III", "IV", "V")
_TIE = 1e-9


@dataclass(frozen=True)
class WqiBand:
    """A VN_WQI level (§1.4 names and colours, Bảng 7 uses)."""

    name_vi: str
    name_en: str
    colour: str  # "#rrggbb"
    use_vi: str
    use_en: str
    low: int
    high: int
    colour_name_vi: str = ""
    colour_name_en: str = ""
    rgb: tuple[int, int, int] = (0, 0, 0)
    table7_name_vi: str = ""  # Bảng 7 names 26–50 "Kém" and 10–25 "Ô nhiễm nặng"


@dataclass(frozen=True)
class WqiResult:
    """One VN_WQI: ``wqi`` None (with ``reason``) where the data do not meet §2.1."""

    wqi: int | None
    band: WqiBand | None
    groups: dict[str, float | None]  # I: WQI_pH; II, III: geometric means; IV, V: arithmetic means
    reason: str | None
    sub_indices: dict[str, float] = field(default_factory=dict)  # WQI_SI per parameter ("do" for DO)
    do_pct: float | None = None
    value: float | None = None  # before rounding


REASONS: dict[str, tuple[str, str]] = {
    "group_iv_too_few": (
        "Nhóm IV (hữu cơ và dinh dưỡng) cần ít nhất 3 thông số",
        "Group IV (organic and nutrients) needs at least 3 parameters",
    ),
    "too_few_groups": ("Cần số liệu của ít nhất 3/5 nhóm thông số", "Data of at least 3 of the 5 groups are needed"),
    "group_ii_required": (
        "Thủy vực chịu tác động của thuốc BVTV phải có nhóm II",
        "A water body affected by pesticides needs group II",
    ),
    "group_iii_required": (
        "Thủy vực chịu tác động của kim loại nặng phải có nhóm III",
        "A water body affected by heavy metals needs group III",
    ),
}


@dataclass(frozen=True)
class _Param:
    key: str
    group: str
    unit: str
    label: str
    nodes: tuple[tuple[float, float], ...] = ()
    below: float = 100.0
    above: float = 10.0
    limit: float | None = None  # group II: ≤ limit → 100, above → 10


def _load() -> tuple[dict[str, _Param], tuple[float, ...], tuple[WqiBand, ...]]:
    raw: dict[str, Any] = json.loads(_DATA.read_text(encoding="utf-8"))
    params = {
        key: _Param(
            key=key,
            group=p["group"],
            unit=p["unit"],
            label=p["label"],
            nodes=tuple((float(b), float(q)) for b, q in p.get("nodes", ())),
            below=float(p.get("below", 100)),
            above=float(p.get("above", 10)),
            limit=p.get("limit"),
        )
        for key, p in raw["parameters"].items()
    }
    bands = tuple(
        WqiBand(
            name_vi=b["name_vi"],
            name_en=b["name_en"],
            colour="#{:02x}{:02x}{:02x}".format(*b["rgb"]),
            use_vi=b["use_vi"],
            use_en=b["use_en"],
            low=b["low"],
            high=b["high"],
            colour_name_vi=b["colour_vi"],
            colour_name_en=b["colour_en"],
            rgb=(b["rgb"][0], b["rgb"][1], b["rgb"][2]),
            table7_name_vi=b["table7_name_vi"],
        )
        for b in raw["bands"]
    )
    return params, tuple(float(c) for c in raw["do_saturation_mg_l"]), bands


PARAMETERS, _DO_SAT, BANDS = _load()
# keys a sample may carry: the parameters, plus DO in mg/L and the water temperature
SAMPLE_KEYS = ("ph", "temp", "do", *[k for k in PARAMETERS if k != "ph"])
UNITS: dict[str, str] = {"temp": "°C", "do": "mg/L", **{k: p.unit for k, p in PARAMETERS.items()}}


_ALIASES = {
    "temperature": "temp",
    "t": "temp",
    "nnh4": "nh4",
    "nno3": "no3",
    "nno2": "no2",
    "ppo4": "po4",
    "cr6+": "cr6",
    "dopct": "do_pct",
    "dosat": "do_pct",
    "heptachlorheptachlorepoxide": "heptachlor",
}


def canonical_key(name: str) -> str | None:
    """The sample key a parameter name stands for ("pH", "N-NH4", "E.coli", "Cr6+", "temperature" …)."""
    key = name.strip().lower()
    if key in SAMPLE_KEYS:
        return key
    folded = "".join(ch for ch in key if ch.isalnum() or ch == "+")
    folded = _ALIASES.get(folded, folded).replace("+", "")
    return folded if folded in SAMPLE_KEYS else None


def band_for(wqi: int) -> WqiBand:
    """The band of a VN_WQI value 0…100."""
    for band in BANDS:
        if band.low <= wqi <= band.high:
            return band
    raise ValueError(f"WQI {wqi} ngoài thang 0–100 (outside the 0–100 scale)")


def do_saturation(temp_c: float) -> float:
    """Oxygen saturation of water at ``temp_c`` °C, mg/L (QĐ 1460, §2.2.a)."""
    a, b, c, d = _DO_SAT
    return a + b * temp_c + c * temp_c**2 + d * temp_c**3


def sub_index(key: str, value: float) -> float:
    """WQI_SI of one parameter (``do_pct`` for DO), unrounded."""
    p = PARAMETERS.get(key)
    if p is None:
        raise ValueError(f"không có thông số {key!r} (unknown parameter)")
    _check(key, value)
    if p.limit is not None:
        return 100.0 if value <= p.limit else 10.0
    nodes = p.nodes
    if value < nodes[0][0]:
        return p.below
    if value > nodes[-1][0]:
        return p.above
    for (b0, q0), (b1, q1) in itertools.pairwise(nodes):
        if value == b0:
            return q0
        if b0 < value < b1:
            return q0 + (q1 - q0) * (value - b0) / (b1 - b0)
    return nodes[-1][1]  # equal to the last node


def _check(key: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{key}: giá trị không phải là số hữu hạn (not a finite number)")
    if key == "ph":
        if not 0 <= value <= 14:
            raise ValueError(f"pH {value} ngoài khoảng 0–14 (outside 0–14)")
    elif key == "temp":
        if not 0 <= value <= 50:
            raise ValueError(f"nhiệt độ nước {value} °C ngoài khoảng 0–50 (water temperature outside 0–50 °C)")
    elif value < 0:
        raise ValueError(f"{key}: giá trị âm {value} (negative value)")


def _half_up(x: float) -> int:
    r = math.floor(x + 0.5)
    if abs(x - math.floor(x) - 0.5) < _TIE:
        r = math.floor(x) + 1
    return int(r)


def wqi(
    sample: Mapping[str, float | None], *, weighted: bool = False, pesticides: bool = False, heavy_metals: bool = False
) -> WqiResult:
    """The VN_WQI of one sample (keys in the module docstring; None = not measured).

    ``weighted`` applies Công thức 5 (organic pollution matters); ``pesticides`` / ``heavy_metals``
    mark a water body where group II / III is mandatory. Unknown keys, negative values, pH
    outside 0–14 and ``do`` without ``temp`` (and without ``do_pct``) raise ValueError.
    """
    values: dict[str, float] = {}
    for name, v in sample.items():
        key = canonical_key(name)
        if key is None:
            raise ValueError(f"không có thông số {name!r} (unknown parameter)")
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if key in values:
            raise ValueError(f"thông số {key} được cho hai lần (parameter given twice)")
        x = float(v)
        _check(key, x)
        values[key] = x
    do_pct = values.pop("do_pct", None)
    do_mg, temp = values.pop("do", None), values.pop("temp", None)
    if do_pct is None and do_mg is not None:
        if temp is None:
            raise ValueError("DO (mg/L) cần nhiệt độ nước temp (DO needs the water temperature, or give do_pct)")
        do_pct = do_mg / do_saturation(temp) * 100
    subs: dict[str, float] = {key: sub_index(key, x) for key, x in values.items()}
    if do_pct is not None:
        subs["do"] = sub_index("do_pct", do_pct)
    by_group: dict[str, list[float]] = {g: [] for g in GROUPS}
    for key, q in subs.items():
        by_group[PARAMETERS["do_pct" if key == "do" else key].group].append(q)
    groups: dict[str, float | None] = {
        "I": by_group["I"][0] if by_group["I"] else None,
        "II": _geometric_mean(by_group["II"]),
        "III": _geometric_mean(by_group["III"]),
        "IV": sum(by_group["IV"]) / len(by_group["IV"]) if by_group["IV"] else None,
        "V": sum(by_group["V"]) / len(by_group["V"]) if by_group["V"] else None,
    }
    reason = _reason(groups, len(by_group["IV"]), pesticides=pesticides, heavy_metals=heavy_metals)
    if reason is not None:
        return WqiResult(None, None, groups, reason, subs, do_pct)
    value = _combine(groups, weighted=weighted)
    rounded = _half_up(value)
    return WqiResult(rounded, band_for(rounded), groups, None, subs, do_pct, value)


def _geometric_mean(qs: list[float]) -> float | None:
    return math.prod(qs) ** (1 / len(qs)) if qs else None


def _reason(groups: Mapping[str, float | None], n_iv: int, *, pesticides: bool, heavy_metals: bool) -> str | None:
    if n_iv < 3:
        return "group_iv_too_few"
    if sum(1 for g in GROUPS if groups[g] is not None) < 3:
        return "too_few_groups"
    if pesticides and groups["II"] is None:
        return "group_ii_required"
    if heavy_metals and groups["III"] is None:
        return "group_iii_required"
    return None


def _combine(groups: Mapping[str, float | None], *, weighted: bool) -> float:
    factor = 1.0
    for g in ("I", "II", "III"):
        q = groups[g]
        if q is not None:
            factor *= q / 100
    iv, v = groups["IV"], groups["V"]
    assert iv is not None
    if v is None:  # Công thức 4
        return factor * iv
    if weighted:  # Công thức 5
        return factor * float((iv**2 * v) ** (1 / 3))
    return factor * math.sqrt(iv * v)  # Công thức 3
