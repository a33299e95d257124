"""Write the figures of the latest reliability run into RELIABILITY.md's table.

    .venv/bin/pytest tests/reliability && .venv/bin/python -m tests.reliability.report

Only what the tests recorded (conftest.SUMMARY) goes into the table; nothing is typed in.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .conftest import SUMMARY

DOCUMENT = Path(__file__).resolve().parents[2] / "RELIABILITY.md"
START, END = "<!-- table:start -->", "<!-- table:end -->"
TITLES = {
    "test_hostile_input": "Hostile input",
    "test_properties": "Properties",
    "test_retrain_load": "Load during retrains",
    "test_crash_and_corruption": "Crashes and damaged files",
    "test_storage_faults": "Full / read-only disk",
    "test_process_faults": "Process faults",
    "test_schemathesis": "Schema fuzzing",
    "test_security": "Security",
    "test_replicas": "Replicas on PostgreSQL",
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


def main() -> int:
    summary = json.loads(SUMMARY.read_text())
    text = DOCUMENT.read_text()
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    DOCUMENT.write_text(f"{before}{START}\n{table(summary)}\n{END}{after}")
    print(f"{DOCUMENT.name}: {len(summary['rows'])} rows from {SUMMARY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
