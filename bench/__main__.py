"""Run every benchmark, write ``var/bench/results.json`` and refresh the table in docs/PERFORMANCE.md."""

from __future__ import annotations

import importlib
import json
import pkgutil
import platform
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "var" / "bench" / "results.json"
DOC = ROOT / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def machine_speed(seconds: float = 1.0) -> int:
    """Rounds per second of a fixed pure-Python loop on one core: the shared machines' speed moves
    by half from one quarter of an hour to the next, so each run records it at its start and end."""
    started = time.perf_counter()
    rounds = 0
    while time.perf_counter() - started < seconds:
        sum(range(10_000))
        rounds += 1
    return round(rounds / (time.perf_counter() - started))


def main() -> int:
    only = set(sys.argv[1:])
    print(f"→ {bench.postgres_leg()[1]}", flush=True)
    speed = machine_speed()
    print(f"→ machine speed {speed:,} rounds/s", flush=True)
    results: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpu_count": __import__("os").cpu_count(),
            "speed_at_start": speed,
        },
        "benchmarks": {},
    }
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda i: i.name):
        if not info.name.startswith("bench_") or (only and info.name not in only):
            continue
        print(f"→ {info.name} …", flush=True)
        started = time.perf_counter()
        figures = importlib.import_module(f"bench.{info.name}").run()
        results["benchmarks"][info.name] = figures
        print(f"  {json.dumps(figures, ensure_ascii=False)} ({time.perf_counter() - started:.1f} s)", flush=True)
    results["machine"]["speed_at_end"] = machine_speed()
    print(f"→ machine speed {results['machine']['speed_at_end']:,} rounds/s", flush=True)
    if only and RESULTS.exists():
        # A partial run updates its own benchmarks and keeps the others' last figures.
        previous = json.loads(RESULTS.read_text())
        results["benchmarks"] = {**previous.get("benchmarks", {}), **results["benchmarks"]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"✓ {RESULTS.relative_to(ROOT)}")
    _update_doc(results)
    return 0


def _update_doc(results: dict[str, Any]) -> None:
    rows = ["| benchmark | figure | value |", "|---|---|---|"]
    for name, figures in results["benchmarks"].items():
        for key, value in figures.items():
            shown = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else value
            rows.append(f"| {name} | {key} | {shown} |")
    table = "\n".join(
        [
            BEGIN,
            f"Last run: {results['at']} (Python {results['machine']['python']}, "
            f"{results['machine']['cpu_count']} cores, machine speed {results['machine']['speed_at_start']:,} "
            f"→ {results['machine']['speed_at_end']:,} rounds/s of `bench.__main__.machine_speed`)",
            "",
            *rows,
            END,
        ]
    )
    text = DOC.read_text() if DOC.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), table.replace("\\", "\\\\"), text, flags=re.S)
    else:
        text += "\n" + table + "\n"
    DOC.write_text(text)
    print(f"✓ {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    raise SystemExit(main())
