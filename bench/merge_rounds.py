"""Joins one round's per-case measurements (bench/run.sh): NAME.rR.CASE.json into
NAME.rR.json (their union; the cases write distinct keys) and NAME.rR.CASE.perf into
NAME.rR.perf (task-clock and instructions summed, in `perf stat -x,` form), so that
bench/report.py reads a round as before.
Usage: merge_rounds.py OUT_DIR NAME ROUND CASE..."""
import json, sys
from pathlib import Path

out_dir, name, r, cases = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
merged, totals = {}, {}
for case in cases:
    part = out_dir / f"{name}.r{r}.{case}.json"
    try:
        merged.update(json.loads(part.read_text().strip().splitlines()[-1]))
    except (OSError, IndexError, ValueError) as e:
        merged.setdefault("errors", []).append(f"{part.name}: {e}")
    try:
        for line in (out_dir / f"{name}.r{r}.{case}.perf").read_text().splitlines():
            f = line.split(",")
            if len(f) > 2 and f[0].replace(".", "", 1).isdigit():
                event = f[2].split(":")[0]
                if event in ("task-clock", "instructions"):
                    totals[event] = totals.get(event, 0.0) + float(f[0])
    except OSError:
        pass
(out_dir / f"{name}.r{r}.json").write_text(json.dumps(merged) + "\n")
if totals:
    units = {"task-clock": "msec", "instructions": ""}
    lines = [f"{v:.2f},{units[k]},{k}" for k, v in totals.items()]
    (out_dir / f"{name}.r{r}.perf").write_text("\n".join(lines) + "\n")
