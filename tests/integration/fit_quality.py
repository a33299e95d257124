"""Held-out accuracy of the service's retrain defaults on scikit-learn's data sets, beside
scikit-learn's own models, through a running gunicorn: the table of docs/training.md.

Each binary task is split 70/30 (stratified, random_state=0). The service gets the 70 % raw,
with "standardize": true and nothing else (plus {"hidden": {"units": 64}} where the task is
not linear), and is scored with /predict on the 30 %. scikit-learn fits the same 70 %:
standardized LogisticRegression on the linear tasks, standardized MLPClassifier on the
others, each with its defaults. Deterministic: every split and model is seeded.

    python -m tests.integration.fit_quality            # print the table
    python -m tests.integration.fit_quality --write    # and put it in docs/training.md
    python -m tests.integration.fit_quality --grid     # the settings the defaults were chosen from
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import datasets
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .server import TOKEN, Gunicorn

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"
BEGIN, END = "<!-- fit_quality: begin -->", "<!-- fit_quality: end -->"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HIDDEN = {"units": 64}
# The defaults before the intercept and the penalty: the article's rule as it stood.
BEFORE = {"intercept": False, "l2": 0, "learning_rate": 1.0, "refit": False, "force": True}


@dataclass(frozen=True)
class Task:
    name: str
    load: Callable[[], tuple[np.ndarray, np.ndarray]]
    linear: bool


def _class(loader: Callable[..., Any], label: int) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def load() -> tuple[np.ndarray, np.ndarray]:
        x, y = loader(return_X_y=True)
        return x, (y == label).astype(int)

    return load


def _xor() -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).uniform(-1, 1, (1000, 2))
    return x, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)


TASKS = [
    Task("breast cancer", lambda: datasets.load_breast_cancer(return_X_y=True), True),
    *(Task(f"iris: {n} vs rest", _class(datasets.load_iris, i), True)
      for i, n in enumerate(("setosa", "versicolor", "virginica"))),
    *(Task(f"wine: class {i} vs rest", _class(datasets.load_wine, i), True) for i in range(3)),
    Task("digits: 0 vs rest", _class(datasets.load_digits, 0), True),
    Task("XOR of two inputs", _xor, False),
    Task("make_moons(1000, noise=0.2)", lambda: datasets.make_moons(1000, noise=0.2, random_state=0), False),
    Task("make_circles(1000, noise=0.1, factor=0.5)",
         lambda: datasets.make_circles(1000, noise=0.1, factor=0.5, random_state=0), False),
]  # fmt: skip


@dataclass(frozen=True)
class Row:
    task: Task
    shape: tuple[int, int]
    service: float  # the defaults (with the hidden layer on the non-linear tasks)
    reference: float  # scikit-learn's
    linear_service: float  # the defaults without a hidden layer
    before: float  # the previous defaults

    @property
    def gap(self) -> float:
        return self.service - self.reference


def split(task: Task) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = task.load()
    parts = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    return tuple(np.asarray(p) for p in parts)  # type: ignore[return-value]


def reference(
    task: Task, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> float:
    model = LogisticRegression() if task.linear else MLPClassifier(max_iter=2000, random_state=0)
    return float(make_pipeline(StandardScaler(), model).fit(x, y).score(x_test, y_test))


def service(server: Gunicorn, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
            **settings: Any) -> float:  # fmt: skip
    """Retrain on (x, y) with "standardize" and ``settings``; accuracy of /predict on the test rows."""
    body = {"inputs": x.tolist(), "targets": y.tolist(), "standardize": True, **settings}
    answer = server.post("/admin/retrain", body, headers=AUTH, timeout=60)
    if answer.status_code != 200:
        raise AssertionError(f"retrain {settings}: {answer.status_code} {answer.text[:500]}")
    predicted = server.post("/predict", {"inputs": x_test.tolist()}).json()["predictions"]
    return float(np.mean((np.array(predicted) >= 0.5) == y_test))


def measure(server: Gunicorn, tasks: list[Task] = TASKS) -> list[Row]:
    rows = []
    for task in tasks:
        x, x_test, y, y_test = split(task)
        # force: a linear model of a non-linear task may be no better than a constant answer
        plain = service(server, x, y, x_test, y_test, force=not task.linear)
        chosen = plain if task.linear else service(server, x, y, x_test, y_test, hidden=HIDDEN)
        rows.append(
            Row(
                task,
                x.shape,
                chosen,
                reference(task, x, y, x_test, y_test),
                plain,
                service(server, x, y, x_test, y_test, **BEFORE),
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| data (training rows x features) | the service's defaults | scikit-learn | difference "
        "| without a hidden layer | the previous defaults |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        model = "" if row.task.linear else ", hidden 64"
        versus = "LogisticRegression" if row.task.linear else "MLPClassifier"
        lines.append(
            f"| {row.task.name} ({row.shape[0]} x {row.shape[1]}) | {row.service:.3f}{model} "
            f"| {row.reference:.3f} {versus} | {row.gap:+.3f} | {row.linear_service:.3f} "
            f"| {row.before:.3f} |"
        )
    return "\n".join(lines)


def grid(server: Gunicorn) -> str:
    """The worst gap to scikit-learn over every task, for each candidate setting."""
    lines = [
        "| l2 | refit | learning rate | iterations | worst difference (task) |",
        "|---|---|---|---:|---|",
    ]
    data = {task.name: split(task) for task in TASKS}
    default = 10_000
    candidates = [
        (l2, refit, None, default) for l2 in (0, 0.1, 0.3, 1.0) for refit in (True, False)
    ]
    candidates += [(0.3, True, step, default) for step in (1.0, 16.0)]
    candidates += [(0.3, True, None, 20_000)]  # 30,000 on digits passes the work cap
    for l2, refit, step, iterations in candidates:
        gaps = []
        for task in TASKS:
            x, x_test, y, y_test = data[task.name]
            extra: dict[str, Any] = {} if task.linear else {"hidden": HIDDEN}
            if step is not None:
                extra["learning_rate"] = step / len(y)
            ours = service(server, x, y, x_test, y_test, l2=l2, refit=refit, force=True,
                           iterations=iterations, **extra)  # fmt: skip
            gaps.append((ours - reference(task, x, y, x_test, y_test), task.name))
        worst = min(gaps)
        rate = "4 / rows (default)" if step is None else f"{step:g} / rows"
        lines.append(
            f"| {l2:g} | {str(refit).lower()} | {rate} | {iterations:,} "
            f"| {worst[0]:+.3f} ({worst[1]}) |"
        )
    return "\n".join(lines)


def write(text: str, begin: str = BEGIN, end: str = END) -> None:
    doc = DOC.read_text()
    head, _, rest = doc.partition(begin)
    _, _, tail = rest.partition(end)
    DOC.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="update docs/training.md")
    parser.add_argument("--grid", action="store_true", help="the settings' table instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Gunicorn(Path(tmp)).start()
        try:
            if args.grid:
                text = grid(server)
                markers = ("<!-- fit_grid: begin -->", "<!-- fit_grid: end -->")
            else:
                text, markers = table(measure(server)), (BEGIN, END)
        finally:
            server.stop()
    print(text)
    if args.write:
        write(text, *markers)


if __name__ == "__main__":
    main()
