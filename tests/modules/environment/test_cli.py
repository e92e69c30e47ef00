"""The ``ioc env`` command, run through ``ioc.cli.main`` as officers run it (and once as a process)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ioc.cli import main

HEADER = "station_id,time,pm25,pm10,o3,no2,so2,co\n"
# the decision's NowCast example (PM2.5, 09:00 … 20:00) with its hourly O3 and NO2 at 20:00
EXAMPLE = [26.9, 24.7, 20.5, 23.5, 19.5, 16.5, 19.0, 16.5, 20.3, 22.4, 19.6, 20.6]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IOC_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("IOC_DATABASE_URL", raising=False)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["env", *args])
    out, err = capsys.readouterr()
    return code, out, err


def example_csv() -> str:
    rows = [f"HN1,2019-11-12T{9 + k:02d}:00:00+07:00,{v},,,,," for k, v in enumerate(EXAMPLE[:-1])]
    rows.append("HN1,2019-11-12T20:00:00+07:00,20.6,,136.1,118.7,,")
    return HEADER + "\n".join(rows) + "\n"


def test_hourly_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "in.csv"
    path.write_text(example_csv(), encoding="utf-8")
    code, out, err = run(capsys, "aqi", "--hourly", str(path))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "station_id,time,aqi,dominant"
    assert len(lines) == 13
    assert lines[1] == "HN1,2019-11-12T09:00:00+07:00,,"  # one hour only: no NowCast, no AQI
    assert lines[-1] == "HN1,2019-11-12T20:00:00+07:00,59,no2"  # the formula's 59, not the printed 60


def test_daily_example_and_sorting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [HEADER.strip()]
    for k in range(24):  # 2019-11-12 01:00 … 2019-11-13 00:00, written in UTC (= 18:00Z … 17:00Z)
        hour = (18 + k) % 24
        day = 11 if hour >= 18 else 12
        o3 = 89.3 if k < 8 else (114.6 if k == 19 else 50)
        no2 = 130.8 if k == 5 else 80
        rows.append(f"B,2019-11-{day:02d}T{hour:02d}:00:00Z,55.7,,{o3},{no2},,")
    rows.append("A,2019-11-13T01:00:00+07:00,,12,,,,")  # station A sorts first
    rows.append("A,2019-11-12T00:00:00+07:00,,,40,,,")  # day 2019-11-11, no PM: no AQI
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    code, out, err = run(capsys, "aqi", "--daily", str(tmp_path / "d.csv"))
    assert code == 0, err
    assert out.splitlines() == [
        "station_id,date,aqi,dominant",
        "A,2019-11-11,,",
        "A,2019-11-13,12,pm10",
        "B,2019-11-12,110,pm25",
    ]


def test_stdin_and_output_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(example_csv()))
    target = tmp_path / "out.csv"
    code, out, err = run(capsys, "aqi", "--hourly", "-", "--output", str(target))
    assert code == 0 and out == "" and err == ""
    assert target.read_text(encoding="utf-8").splitlines()[-1] == "HN1,2019-11-12T20:00:00+07:00,59,no2"


def test_bad_rows_are_reported_and_the_rest_computes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = example_csv() + "\n".join(
        [
            "HN1,2019-11-12T20:00:00+07:00,1,,,,,",  # line 14: the same hour again
            "HN1,2019-11-12T21:30:00+07:00,1,,,,,",  # 15: not on the hour
            "HN1,2019-11-12T21:00:00,1,,,,,",  # 16: no offset
            "HN1,yesterday,1,,,,,",  # 17
            "HN1,2019-11-12T22:00:00+07:00,-3,,,,,",  # 18: negative
            "HN1,2019-11-12T23:00:00+07:00,abc,,,,,",  # 19
            ",2019-11-12T23:00:00+07:00,1,,,,,",  # 20: no station
            "HN1,2019-11-12T23:00:00+07:00,1,,,,",  # 21: a field short
            "HN1,2019-11-12T21:00:00+07:00,nan,,,,,",  # 22
        ]
    )
    (tmp_path / "bad.csv").write_text(text + "\n", encoding="utf-8")
    code, out, err = run(capsys, "aqi", "--hourly", str(tmp_path / "bad.csv"))
    assert code == 0
    assert len(out.splitlines()) == 13  # the good rows
    for line in range(14, 23):
        assert f"dòng {line} (line {line})" in err
    assert "line 14: same station and time as line 13" not in err and "same station and time as line 13" in err
    assert "not on the hour" in err and "no UTC offset" in err and "negative value" in err
    assert "expected 8 fields, got 7" in err and "missing station_id" in err
    assert "9 bad rows" in err


def test_all_bad_and_unusable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "allbad.csv").write_text(HEADER + "S,not-a-time,1,,,,,\n", encoding="utf-8")
    code, out, err = run(capsys, "aqi", "--daily", str(tmp_path / "allbad.csv"))
    assert code == 1 and out == "station_id,date,aqi,dominant\n" and "no valid rows" in err
    (tmp_path / "empty.csv").write_text(HEADER, encoding="utf-8")
    assert run(capsys, "aqi", "--daily", str(tmp_path / "empty.csv"))[:2] == (0, "station_id,date,aqi,dominant\n")
    (tmp_path / "hdr.csv").write_text("station_id,time,pm2.5\n", encoding="utf-8")
    code, _, err = run(capsys, "aqi", "--hourly", str(tmp_path / "hdr.csv"))
    assert code == 2 and "unknown columns" in err
    code, _, err = run(capsys, "aqi", "--hourly", str(tmp_path / "missing.csv"))
    assert code == 2 and "cannot read" in err
    with pytest.raises(SystemExit):
        main(["env", "aqi", "--hourly", "a.csv", "--daily", "b.csv"])


def test_column_order_free_and_bom(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "\ufeffTime,Station_ID,pm10\n2024-01-01T02:00:00+07:00,X,50\n2024-01-01T01:00:00+07:00,X,50\n"
    (tmp_path / "o.csv").write_bytes(text.encode("utf-8"))
    code, out, _ = run(capsys, "aqi", "--hourly", str(tmp_path / "o.csv"))
    assert code == 0
    assert out.splitlines()[1:] == ["X,2024-01-01T01:00:00+07:00,,", "X,2024-01-01T02:00:00+07:00,50,pm10"]


def test_wqi_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "\n".join(
        [
            "station_id,time,ph,temp,do,bod5,cod,nh4,po4,coliform,cu,as,aldrin,dieldrin",
            "SONG-LAM,2024-04-02T09:00:00+07:00,7.2,27.5,5.7,20,25,0.2,0.3,10000,0.05,0.02,0.05,0.05",
            "SONG-LAM,2024-04-01T09:00:00+07:00,7.2,,,20,25,,,,,,,",
            "AO-VINH,2024-04-01T09:00:00+07:00,7.2,,6,20,25,0.2,,,,,,",
            "AO-VINH,2024-04-02T09:00:00+07:00,15,,,20,25,0.2,,,,,,",
        ]
    )
    (tmp_path / "w.csv").write_text(text + "\n", encoding="utf-8")
    code, out, err = run(capsys, "wqi", str(tmp_path / "w.csv"))
    assert code == 0
    assert out.splitlines() == [
        "station_id,time,wqi,reason",
        "SONG-LAM,2024-04-01T09:00:00+07:00,,group_iv_too_few",
        "SONG-LAM,2024-04-02T09:00:00+07:00,35,",
    ]
    assert "dòng 4 (line 4)" in err and "temperature" in err
    assert "dòng 5 (line 5)" in err and "outside 0–14" in err
    code, out, _ = run(capsys, "wqi", str(tmp_path / "w.csv"), "--weighted", "--pesticides")
    assert out.splitlines()[2] == "SONG-LAM,2024-04-02T09:00:00+07:00,40,"
    (tmp_path / "wbad.csv").write_text("station_id,time,lead\n", encoding="utf-8")
    assert run(capsys, "wqi", str(tmp_path / "wbad.csv"))[0] == 2


def test_as_a_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "IOC_DATABASE_URL"} | {"IOC_VAR_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "ioc", "env", "aqi", "--hourly", "-"],
        input=example_csv(),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "HN1,2019-11-12T20:00:00+07:00,59,no2"
