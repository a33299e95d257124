"""Input drift: training statistics, binning, the stability index, the shared window, reports.

Each computation is checked against a second, plain-Python one written from its definition.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.drift.score import EPSILON, stability_index
from service.drift.window import Window
from service.errors import CorruptModel
from service.model import statistics as statistics_module
from service.model.statistics import Bins, FeatureStatistics, describe, sample
from service.settings import Settings
from service.store import canonical, decode

from .conftest import AUTH, TOKEN

ROWS = np.random.default_rng(7).normal(size=(1_000, 3)) * [1.0, 5.0, 0.1] + [0.0, 10.0, -3.0]
DISCRETE = np.array([[0, 1, 5], [1, 1, 5], [1, 0, 5], [0, 0, 5], [1, 1, 5]], dtype=float)


def reference_edges(column: list[float], bins: int) -> list[float]:
    """The inverted-CDF quantiles k / bins by their definition: the ceil(k n / bins)-th value."""
    ordered, n = sorted(column), len(column)
    return sorted({ordered[math.ceil(k * n / bins) - 1] for k in range(1, bins)})


@pytest.mark.parametrize("rows", [ROWS, DISCRETE], ids=["continuous", "discrete"])
@pytest.mark.parametrize("bins", [2, 10, 37])
def test_statistics_match_their_definitions(rows: np.ndarray, bins: int) -> None:
    for column, feature in zip(rows.T.tolist(), describe(rows, bins), strict=True):
        assert feature.count == len(column)
        assert feature.mean == pytest.approx(statistics.fmean(column), abs=1e-12)
        assert feature.std == pytest.approx(statistics.pstdev(column), abs=1e-12)
        assert (feature.min, feature.max) == (min(column), max(column))
        edges = reference_edges(column, bins)
        assert list(feature.edges) == edges
        below = [sum(1 for value in column if sum(e <= value for e in edges) == i) for i in
                 range(len(edges) + 1)]  # fmt: skip
        assert list(feature.fractions) == pytest.approx([b / len(column) for b in below])


def test_a_zero_one_feature_gets_two_bins_and_a_constant_one_a_single_edge() -> None:
    first, _, constant = describe(DISCRETE, 10)
    assert first.edges == (0.0, 1.0) and first.fractions == (0.0, 0.4, 0.6)
    assert constant.edges == (5.0,) and constant.fractions == (0.0, 1.0)


def by_rows(bins: Bins, rows: np.ndarray, training: list[FeatureStatistics]) -> np.ndarray:
    """The cells by their definition, value by value in plain Python: bin i holds the values
    with i edges at or below them; below the minimum and above the maximum counted apart."""
    counted = np.zeros((bins.n_features, bins.width), dtype=np.int64)
    for row in rows.tolist():
        for feature, (value, stats) in enumerate(zip(row, training, strict=True)):
            counted[feature, sum(edge <= value for edge in stats.edges)] += 1
            if value < stats.min:
                counted[feature, bins.bins] += 1
            if value > stats.max:
                counted[feature, bins.bins + 1] += 1
    return counted.ravel()


@pytest.mark.parametrize(
    ("features", "at_once"),
    [(3, 1 << 18), (40, 1 << 18), (40, 0)],
    ids=["a search per feature", "one comparison", "too many to compare at once"],
)
def test_per_row_cells_and_batch_counts_agree(
    features: int, at_once: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two implementations (bisect per row in Python, numpy per batch) count the same cells."""
    monkeypatch.setattr(statistics_module, "_COMPARED_AT_ONCE", at_once)
    rng = np.random.default_rng(3)
    training = np.concatenate([ROWS, DISCRETE[rng.integers(0, 5, 1_000)]], axis=1)
    training = np.tile(training, (1, -(-features // 6)))[:, :features]
    statistics_ = describe(training, 10)
    bins = Bins(statistics_)
    live = training[rng.integers(0, 1_000, 80)] * rng.uniform(0.5, 1.5, (80, features))
    live[:4] = training[:4] * [[-50], [50], [1e9], [-1e9]]  # beyond either end
    live[4:8] = training[[0]]  # values equal to the training minimum or maximum
    counted = bins.counts(live)
    np.testing.assert_array_equal(by_rows(bins, live, statistics_), counted)
    table = counted.reshape(bins.n_features, bins.width)
    assert (table[:, : bins.bins].sum(axis=1) == len(live)).all()
    assert table[0, bins.bins] == np.count_nonzero(live[:, 0] < training[:, 0].min()) >= 1
    assert table[0, bins.bins + 1] == np.count_nonzero(live[:, 0] > training[:, 0].max()) >= 1


def test_a_big_batch_is_counted_by_a_weighted_sample_of_its_rows() -> None:
    statistics_ = describe(ROWS, 10)
    bins = Bins(statistics_)
    live = np.random.default_rng(4).normal(size=(10_000, 3)) * [1.0, 5.0, 0.1] + [0, 10, -3]
    rows, weight = sample(live)
    assert len(rows) == 257 and weight == 10_000 / 257 and rows.base is None  # a copy
    counted = bins.counts(rows, weight).reshape(3, bins.width)[:, : bins.bins]
    exact = by_rows(bins, live, statistics_).reshape(3, bins.width)[:, : bins.bins]
    assert counted.sum(axis=1) == pytest.approx([10_000] * 3)  # every 39th row, weighted
    assert np.abs(counted / 10_000 - exact / 10_000).max() < 0.06
    assert not np.allclose(counted, exact)  # a sample, not every row
    few = live[:511]  # under twice the sample's size: every row, exactly
    assert sample(few) == (few, 1.0)


def reference_psi(live: list[int], expected: list[float]) -> float:
    rows = sum(live)
    total = 0.0
    for count, share in zip(live, expected, strict=True):
        a, e = max(count / rows, EPSILON), max(share, EPSILON)
        total += (a - e) * math.log(a / e)
    return total


def test_stability_index_is_the_textbook_sum() -> None:
    expected = np.array([[0.1] * 10, [0.0, 0.4, 0.6] + [0.0] * 7])
    used = np.array([[True] * 10, [True] * 3 + [False] * 7])
    live = np.array([[5, 10, 20, 0, 7, 9, 11, 13, 15, 10], [3, 40, 57] + [0] * 7])
    scores = stability_index(live, expected, used)
    assert scores[0] == pytest.approx(reference_psi(live[0].tolist(), [0.1] * 10))
    assert scores[1] == pytest.approx(reference_psi([3, 40, 57], [0.0, 0.4, 0.6]))
    same = stability_index(np.array([[100] * 10]), np.array([[0.1] * 10]), used[:1])
    assert same[0] == 0.0


def fork_and_add(directory: Path, version: int, cells: list[int], seconds: float = 60) -> None:
    context = multiprocessing.get_context("fork")
    process = context.Process(target=_add, args=(directory, version, cells, seconds))
    process.start()
    process.join(10)
    assert process.exitcode == 0


def _add(directory: Path, version: int, cells: list[int], seconds: float) -> None:
    Window(directory, seconds).add_counts(version, one_hot(cells))


def one_hot(cells: list[int]) -> np.ndarray:
    """Counts of 4 cells: one for each time a cell is named."""
    return np.bincount(cells, minlength=4).astype(float)


def test_every_process_reads_the_sum_of_all_writers(tmp_path: Path) -> None:
    mine = Window(tmp_path, 60)
    mine.add_counts(7, np.array([1, 0, 2, 0]))
    fork_and_add(tmp_path, 7, [0, 3, 3])
    fork_and_add(tmp_path, 6, [1, 1])  # another model version: not counted for 7
    np.testing.assert_array_equal(mine.totals(7, 4), [2, 0, 2, 2])
    np.testing.assert_array_equal(Window(tmp_path, 60).totals(7, 4), [2, 0, 2, 2])
    np.testing.assert_array_equal(mine.totals(6, 4), [0, 2, 0, 0])


def test_counts_leave_the_window_and_dead_writers_files_go_with_them(tmp_path: Path) -> None:
    window = Window(tmp_path, 0.6)  # steps of 0.1 s
    fork_and_add(tmp_path, 1, [2], 0.6)
    window.add_counts(1, one_hot([0]))
    assert window.totals(1, 4).tolist() == [1, 0, 1, 0]
    assert len(list(tmp_path.glob("drift-*.bin"))) == 2
    time.sleep(0.9)  # past 0.6 s and the partial step before it
    assert window.totals(1, 4).tolist() == [0, 0, 0, 0]
    assert [path.name for path in tmp_path.glob("drift-*.bin")] == [f"drift-{os.getpid()}.bin"]
    window.add_counts(1, one_hot([1, 1]))
    assert window.totals(1, 4).tolist() == [0, 2, 0, 0]


def test_a_writer_sweeps_dead_writers_expired_files_even_if_nobody_reads(tmp_path: Path) -> None:
    fork_and_add(tmp_path, 1, [2], 1.2)
    (first,) = tmp_path.glob("drift-*.bin")
    time.sleep(1.5)  # the window is 1.2 s
    fork_and_add(tmp_path, 1, [3], 1.2)  # its new file sweeps the first: dead and expired
    (second,) = tmp_path.glob("drift-*.bin")
    assert second != first
    window = Window(tmp_path, 1.2)
    window.add_counts(1, one_hot([0]))  # dead too, the second's counts are still in the window
    assert sorted(tmp_path.glob("drift-*.bin")) == sorted(
        [second, tmp_path / f"drift-{os.getpid()}.bin"]
    )
    assert window.totals(1, 4).tolist() == [1, 0, 0, 1]


def test_a_new_version_starts_from_zero_in_memory_too() -> None:
    window = Window(None, 60)
    window.add_counts(1, one_hot([0, 0]))
    window.add_counts(2, np.array([0, 1, 0, 0]))
    assert window.totals(1, 4).tolist() == [0, 0, 0, 0]
    assert window.totals(2, 4).tolist() == [0, 1, 0, 0]


# -- through the app -------------------------------------------------------------------------


@pytest.fixture
def settings(model_dir: Path) -> Settings:
    return Settings(model_dir=model_dir, admin_token=TOKEN, drift_min_rows=100)


def retrain(client: FlaskClient, rows: np.ndarray, **options: object) -> None:
    targets = (rows[:, 0] > rows[:, 0].mean()).astype(int).tolist()
    body = {"inputs": rows.tolist(), "targets": targets, "standardize": True, **options}
    response = client.post("/admin/retrain", json=body, headers=AUTH)
    assert response.status_code == 200, response.json


def test_the_shifted_feature_drifts_and_the_others_do_not(client: FlaskClient) -> None:
    retrain(client, ROWS, feature_names=["age", "income", "ratio"])
    rng = np.random.default_rng(11)
    like_training = rng.normal(size=(400, 3)) * [1.0, 5.0, 0.1] + [0.0, 10.0, -3.0]
    for row in like_training[:50].tolist():  # single rows: the per-row path
        assert client.post("/predict", json={"inputs": [row]}).status_code == 200
    client.post("/predict", json={"inputs": like_training[50:].tolist()})
    report = client.get("/model/drift").json
    assert report["rows"] == 400 and report["baseline"] and report["drifting"] == 0
    assert [f["name"] for f in report["features"]] == ["age", "income", "ratio"]
    assert all(f["score"] < 0.1 and not f["drifting"] for f in report["features"])

    shifted = like_training.copy()
    shifted[:, 1] += 2 * 5.0  # income, two standard deviations up
    client.post("/predict", json={"inputs": shifted.tolist()})
    report = client.get("/model/drift").json
    scores = {f["name"]: f["score"] for f in report["features"]}
    assert scores["income"] > 0.25 > max(scores["age"], scores["ratio"]), scores
    assert report["drifting"] == 1 and report["features"][1]["drifting"]
    assert report["features"][1]["out_of_range"] > 0.01


def test_too_few_rows_give_no_score_and_say_so(client: FlaskClient) -> None:
    retrain(client, ROWS)
    client.post("/predict", json={"inputs": ROWS[:99].tolist()})
    report = client.get("/model/drift").json
    assert report["rows"] == 99 and report["features"][0]["score"] is None
    assert "at least 100" in report["message"]
    assert [f["name"] for f in report["features"]] == ["x0", "x1", "x2"]


def test_statistics_are_stored_shown_and_carried_by_rollback(client: FlaskClient) -> None:
    retrain(client, ROWS)
    shown = client.get("/model").json["training"]["input_statistics"]
    assert [f["edges"] for f in shown] == [list(f.edges) for f in describe(ROWS, 10)]
    assert [f["mean"] for f in shown] == pytest.approx(ROWS.mean(axis=0).tolist(), abs=1e-12)
    rolled = client.post("/admin/rollback", json={"version": 1}, headers=AUTH).json
    classic = describe(np.array([[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]], float), 10)
    assert [f["fractions"] for f in rolled["training"]["input_statistics"]] == [
        list(f.fractions) for f in classic
    ]
    client.post("/admin/rollback", json={"version": 2}, headers=AUTH)
    assert client.get("/model").json["training"]["input_statistics"] == shown


def rechecksummed(payload: dict) -> bytes:
    payload = {k: v for k, v in payload.items() if k != "checksum"}
    digest = hashlib.sha256(canonical(payload)).hexdigest()
    payload["checksum"] = {"algorithm": "sha256", "value": digest}
    return json.dumps(payload, sort_keys=True, indent=2).encode() + b"\n"


@pytest.fixture
def stored(client: FlaskClient, model_dir: Path) -> bytes:
    retrain(client, ROWS)
    return (model_dir / "model-00000002.json").read_bytes()


def test_the_checksum_covers_the_statistics(stored: bytes) -> None:
    assert decode(stored).bins is not None
    edge = json.loads(stored)["training"]["input_statistics"][1]["edges"][3]
    tampered = stored.replace(repr(edge).encode(), repr(edge + 1e-9).encode(), 1)
    assert tampered != stored
    with pytest.raises(CorruptModel, match="checksum"):
        decode(tampered)


@pytest.mark.parametrize(
    ("change", "defect"),
    [
        (lambda s: s.pop(), "input_statistics do not match n_inputs"),
        (lambda s: s[0]["fractions"].pop(), "fractions"),
        (lambda s: s[0]["edges"].reverse(), "edges must increase"),
        (lambda s: s[0].update(count=0), "unreadable"),
        (lambda s: s[0].update(min=1e9), "min above max"),
    ],
    ids=["a feature short", "fractions short", "edges decrease", "no rows", "min above max"],
)
def test_statistics_of_the_wrong_shape_are_refused(stored: bytes, change, defect: str) -> None:
    payload = json.loads(stored)
    change(payload["training"]["input_statistics"])
    with pytest.raises(CorruptModel, match=defect):
        decode(rechecksummed(payload))


def test_a_document_from_before_statistics_serves_and_says_it_has_no_baseline(
    settings: Settings, model_dir: Path
) -> None:
    model_dir.mkdir(parents=True)
    for document in (Path(__file__).parent / "data/documents-v1").glob("model-*.json"):
        (model_dir / document.name).write_bytes(document.read_bytes())
    client = create_app(settings).test_client()
    model = client.get("/model").json
    assert model["version"] == 2 and model["training"]["input_statistics"] is None
    width = model["n_inputs"]
    assert client.post("/predict", json={"inputs": [[0.5] * width] * 150}).status_code == 200
    report = client.get("/model/drift").json
    assert report["baseline"] is False and report["rows"] == 0
    assert "before training statistics" in report["message"]
    assert len(report["features"]) == width
    assert all(f["score"] is None and not f["drifting"] for f in report["features"])


def test_counting_off_leaves_no_counts(model_dir: Path) -> None:
    off = Settings(model_dir=model_dir, admin_token=TOKEN, drift_enabled=False, drift_min_rows=1)
    client = create_app(off).test_client()
    client.post("/predict", json={"inputs": [[1, 0, 0]] * 20})
    report = client.get("/model/drift").json
    assert report["rows"] == 0 and "off" in report["message"]


@pytest.mark.parametrize(
    ("shift", "share", "documented"),
    [(0.5, 1.0, 0.23), (1.0, 1.0, 0.9), (2.0, 1.0, 3.3), (2.0, 0.3, 0.28)],
)
def test_the_scores_docs_metrics_md_gives_for_shifted_normals(
    shift: float, share: float, documented: float
) -> None:
    rng = np.random.default_rng(0)
    bins = Bins(describe(rng.normal(size=(10_000, 1)), 10))
    live = rng.normal(size=(100_000, 1))
    live[: int(share * len(live))] += shift
    counts = bins.counts(live).reshape(1, -1)[:, : bins.bins]  # every row: no sample here
    score = stability_index(counts, bins.expected, bins.used)[0]
    assert score == pytest.approx(documented, rel=0.08)


def test_the_worked_example_of_docs_metrics_md() -> None:
    score = stability_index(
        np.array([[10, 20, 30, 40]]), np.array([[0.25] * 4]), np.ones((1, 4), bool)
    )
    assert round(float(score[0]), 3) == 0.228


def test_a_window_that_cannot_be_written_costs_the_counts_not_the_answer(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    import service.metrics

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the drift directory should be")
    monkeypatch.setattr(service.metrics, "shared_dir", lambda: blocker / "drift")
    client = create_app(settings).test_client()
    for rows in ([[1, 0, 0]], [[1, 0, 0]] * 2_000):
        response = client.post("/predict", json={"inputs": rows})
        assert response.status_code == 200 and len(response.json["predictions"]) == len(rows)
    assert client.get("/model/drift").json["rows"] == 0
    failures = [r for r in caplog.records if "drift counting failed" in r.getMessage()]
    assert len(failures) == 1  # said once, not per request


def test_rows_reach_the_shared_window_from_the_counting_thread(
    settings: Settings, tmp_path: Path
) -> None:
    """Another process's reader sees them without this one reading: the thread flushes."""
    from service.drift import DriftMonitor
    from service.drift.batcher import FLUSH_SECONDS

    client = create_app(settings).test_client()
    retrain(client, ROWS)
    record = client.application.extensions["neuron"].model.get()
    writer = DriftMonitor(settings, tmp_path)
    reader = DriftMonitor(settings, tmp_path)
    for row in ROWS[:40]:
        writer.observe(row[None, :], record)
    deadline = time.monotonic() + 10 * FLUSH_SECONDS
    while reader.report(record).rows < 40:
        assert time.monotonic() < deadline, "the counting thread did not flush"
        time.sleep(FLUSH_SECONDS / 5)
    assert reader.report(record).rows == 40


def test_a_forked_child_counts_with_its_own_thread(settings: Settings, tmp_path: Path) -> None:
    from service.drift import DriftMonitor

    client = create_app(settings).test_client()
    retrain(client, ROWS)
    record = client.application.extensions["neuron"].model.get()
    monitor = DriftMonitor(settings, tmp_path)
    monitor.observe(ROWS[:3], record)  # the parent's thread is running now

    def child() -> None:
        monitor.observe(ROWS[:5], record)
        time.sleep(1.0)  # the child's own thread flushes; the parent's 3 rows are not its
        os._exit(0)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(10)
    assert process.exitcode == 0
    assert monitor.report(record).rows == 8
