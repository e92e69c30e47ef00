"""Unit conversions for VN_AQI inputs: µg/m³, mg/m³, ppb, ppm at 25 °C and 1 atm."""

from __future__ import annotations

import math

import pytest

from ioc.modules.environment.units import MOLAR_VOLUME_L, from_ugm3, to_ugm3


def test_molar_volume_is_25_degrees_1_atm() -> None:
    # R·T/P at 298.15 K and 101 325 Pa, in litres
    assert pytest.approx(8.314462618 * 298.15 / 101_325 * 1000, abs=0.02) == MOLAR_VOLUME_L


@pytest.mark.parametrize("unit", ["ug/m3", "µg/m3", "μg/m3", "GQ", " ug/m3 "])
def test_micrograms_are_identity(unit: str) -> None:
    assert to_ugm3("pm25", 12.5, unit) == 12.5
    assert to_ugm3("co", 9000.0, unit) == 9000.0


@pytest.mark.parametrize("unit", ["mg/m3", "GP", "MG/M3"])
def test_milligrams(unit: str) -> None:
    assert to_ugm3("co", 10.0, unit) == 10_000.0  # the CO breakpoint of AQI 50
    assert to_ugm3("pm10", 0.05, unit) == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("pollutant", "molar_mass"), [("no2", 46.005), ("so2", 64.058), ("o3", 47.997), ("co", 28.010)]
)
def test_mixing_ratios(pollutant: str, molar_mass: float) -> None:
    per_ppb = molar_mass / 24.45
    assert to_ugm3(pollutant, 1.0, "ppb") == pytest.approx(per_ppb)
    assert to_ugm3(pollutant, 1.0, "61") == pytest.approx(per_ppb)
    assert to_ugm3(pollutant, 1.0, "ppm") == pytest.approx(1000 * per_ppb)
    assert to_ugm3(pollutant, 1.0, "59") == pytest.approx(1000 * per_ppb)
    for unit in ("ppb", "ppm", "mg/m3", "GQ"):
        assert from_ugm3(pollutant, to_ugm3(pollutant, 3.7, unit), unit) == pytest.approx(3.7)


def test_known_values() -> None:
    assert to_ugm3("no2", 100, "ppb") == pytest.approx(188.16, abs=0.01)
    assert to_ugm3("co", 9, "ppm") == pytest.approx(10_310, abs=1)
    assert to_ugm3("PM2.5", 1, "mg/m3") == 1000


def test_refusals() -> None:
    with pytest.raises(ValueError, match="ppb"):
        to_ugm3("pm25", 10, "ppb")
    with pytest.raises(ValueError, match="unknown unit"):
        to_ugm3("no2", 10, "g/l")
    with pytest.raises(ValueError, match="unknown pollutant"):
        to_ugm3("nox", 10, "ppb")
    with pytest.raises(ValueError):
        to_ugm3("no2", math.nan, "ppb")
    with pytest.raises(ValueError):
        from_ugm3("pm10", 10, "ppm")
