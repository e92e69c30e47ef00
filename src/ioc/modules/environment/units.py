"""Air-quality concentration units: µg/m³, mg/m³, ppb and ppm, by name or UN/CEFACT code.

VN_AQI (QĐ 1459/QĐ-TCMT) takes every pollutant in µg/m³, CO included. Mixing ratios (ppb, ppm)
are converted at 25 °C and 1 atm (101.325 kPa), where one mole of gas takes 24.45 L:

    µg/m³ = ppb × M / 24.45        mg/m³ = ppm × M / 24.45

with the molar mass M in g/mol (O3 47.997, NO2 46.005, SO2 64.058, CO 28.010, from the IUPAC
standard atomic weights C 12.011, N 14.007, O 15.999, S 32.06). Particulate matter (PM2.5, PM10)
is a mass concentration only: ppb/ppm of PM raise ValueError.

Unit codes accepted (NGSI-LD ``unitCode`` uses the UN/CEFACT Recommendation 20 codes):

=========  ==================  ==========
unit       names               UN/CEFACT
=========  ==================  ==========
µg/m³      ``ug/m3``, ``µg/m3``  ``GQ``
mg/m³      ``mg/m3``             ``GP``
ppb        ``ppb``               ``61``
ppm        ``ppm``               ``59``
=========  ==================  ==========
"""

from __future__ import annotations

import math

MOLAR_VOLUME_L = 24.45  # L/mol at 25 °C and 1 atm
MOLAR_MASS_G = {"o3": 47.997, "no2": 46.005, "so2": 64.058, "co": 28.010}
POLLUTANTS = ("pm25", "pm10", "o3", "no2", "so2", "co")

# unit code → (kind, factor): mass units multiply into µg/m³, mixing ratios into ppb
_UNITS: dict[str, tuple[str, float]] = {
    "ug/m3": ("mass", 1.0),
    "µg/m3": ("mass", 1.0),
    "μg/m3": ("mass", 1.0),  # Greek mu, as often typed
    "µg/m³": ("mass", 1.0),
    "ug/m³": ("mass", 1.0),
    "GQ": ("mass", 1.0),
    "mg/m3": ("mass", 1000.0),
    "mg/m³": ("mass", 1000.0),
    "GP": ("mass", 1000.0),
    "ppb": ("ratio", 1.0),
    "61": ("ratio", 1.0),
    "ppm": ("ratio", 1000.0),
    "59": ("ratio", 1000.0),
}
UNIT_CODES = tuple(_UNITS)


def _unit(unit: str) -> tuple[str, float]:
    key = unit.strip()
    found = _UNITS.get(key) or _UNITS.get(key.lower())
    if found is None:
        raise ValueError(f"không biết đơn vị {unit!r} (unknown unit; one of µg/m3, mg/m3, ppb, ppm, GQ, GP, 61, 59)")
    return found


def _pollutant(pollutant: str) -> str:
    key = pollutant.strip().lower().replace(".", "").replace("_", "")
    if key not in POLLUTANTS:
        raise ValueError(f"không có thông số {pollutant!r} (unknown pollutant; one of {', '.join(POLLUTANTS)})")
    return key


def to_ugm3(pollutant: str, value: float, unit: str) -> float:
    """``value`` of ``pollutant`` in ``unit``, as µg/m³ (gases converted at 25 °C, 1 atm)."""
    if not math.isfinite(value):
        raise ValueError("giá trị không phải là số hữu hạn (value is not a finite number)")
    p = _pollutant(pollutant)
    kind, factor = _unit(unit)
    if kind == "mass":
        return value * factor
    if p not in MOLAR_MASS_G:
        raise ValueError(f"{p}: bụi chỉ đo theo khối lượng, không đổi từ ppb/ppm (particulate matter has no ppb/ppm)")
    return value * factor * MOLAR_MASS_G[p] / MOLAR_VOLUME_L


def from_ugm3(pollutant: str, value: float, unit: str) -> float:
    """The inverse of :func:`to_ugm3`: µg/m³ into ``unit``."""
    if not math.isfinite(value):
        raise ValueError("giá trị không phải là số hữu hạn (value is not a finite number)")
    p = _pollutant(pollutant)
    kind, factor = _unit(unit)
    if kind == "mass":
        return value / factor
    if p not in MOLAR_MASS_G:
        raise ValueError(f"{p}: bụi chỉ đo theo khối lượng, không đổi sang ppb/ppm (particulate matter has no ppb/ppm)")
    return value * MOLAR_VOLUME_L / (MOLAR_MASS_G[p] * factor)
