"""Write the figures of the latest reliability run into RELIABILITY.md's table.

    .venv/bin/pytest tests/reliability && .venv/bin/python -m tests.reliability.report

``--cost-only`` rewrites only the cost-growth table (after running test_cost_growth.py alone).

Only what the tests recorded (conftest.SUMMARY) goes into the table; nothing is typed in.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .conftest import SUMMARY

DOCUMENT = Path(__file__).resolve().parents[2] / "RELIABILITY.md"
START, END = "<!-- table:start -->", "<!-- table:end -->"
COST_START, COST_END = "<!-- cost:start -->", "<!-- cost:end -->"
TITLES = {
    "test_hostile_input": "Hostile input",
    "test_properties": "Properties",
    "test_retrain_load": "Load during retrains",
    "test_crash_and_corruption": "Crashes and damaged files",
    "test_storage_faults": "Full / read-only disk",
    "test_process_faults": "Process faults",
    "test_schemathesis": "Schema fuzzing",
    "test_security": "Security",
    "test_cost_growth": "Cost growth",
    "test_replicas": "Replicas on PostgreSQL",
    "test_hostile_binary": "Hostile V2 binary input",
}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(summary: dict) -> str:
    lines = [
        f"Run finished {summary['finished_at']}; pytest session {summary['session_seconds']} s.",
        "",
        "| Area | Test | Load or count | Faults injected | Failures observed | Result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in summary["rows"]:
        area = TITLES.get(row["module"], row["module"])
        test = row["test"].removeprefix("test_").replace("_", " ")
        cells = (area, test, row["load"], row["faults"], row["failures"], row["outcome"])
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += [
        "",
        "Every test of each area (the table's rows sum some of them up), and its time:",
        "",
        "| Area | Module | Passed | Failed | Skipped | Seconds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, counts in summary["modules"].items():
        cells = (TITLES.get(name, name), f"`{name}.py`", counts["passed"], counts["failed"],
                 counts["skipped"], counts["seconds"])  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def cost_table(summary: dict) -> str | None:
    """CPU per request (a job's: the training process's) at 256 KiB and 4 MiB, by endpoint and
    body family."""
    rows = [cost for row in summary["rows"] for cost in row["figures"].get("cost", [])]
    if not rows:
        return None
    lines = [
        f"Run finished {summary['finished_at']}.",
        "",
        "| Endpoint | Body family | Status | CPU at 256 KiB (ms) | CPU at 4 MiB (ms) "
        "| Wall at 4 MiB (ms) | Ratio |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cost in rows:
        cells = (f"`{cost['endpoint']}`", cost["family"], cost["status"], cost["small_cpu_ms"],
                 cost["large_cpu_ms"], cost["large_wall_ms"], cost["ratio"])  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _replace(text: str, start: str, end: str, body: str) -> str:
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    return f"{before}{start}\n{body}\n{end}{after}"


def main(argv: list[str]) -> int:
    summary = json.loads(SUMMARY.read_text())
    text = DOCUMENT.read_text()
    if "--cost-only" not in argv:
        text = _replace(text, START, END, table(summary))
    costs = cost_table(summary)
    if costs is not None:
        text = _replace(text, COST_START, COST_END, costs)
    DOCUMENT.write_text(text)
    print(f"{DOCUMENT.name}: {len(summary['rows'])} rows from {SUMMARY}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
