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


def main() -> int:
    only = set(sys.argv[1:])
    print(f"→ {bench.postgres_leg()[1]}", flush=True)
    results: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count()},
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
            f"{results['machine']['cpu_count']} cores)",
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
