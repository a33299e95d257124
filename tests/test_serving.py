"""service.serving.ModelServer, below HTTP: start-up, predict, retrain limits, rollback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service import errors
from service.schemas import PredictRequest, RetrainRequest, RollbackRequest
from service.serving import ModelServer
from service.settings import Settings


@pytest.fixture
def server(tmp_path: Path) -> ModelServer:
    server = ModelServer(Settings(model_dir=tmp_path, max_train_rows=4, max_inputs=3))
    server.start()
    return server


def test_start_trains_the_default_once(server: ModelServer, tmp_path: Path) -> None:
    assert server.ready().version == 1
    again = ModelServer(Settings(model_dir=tmp_path))
    assert again.start().version == 1  # loaded, not trained again
    assert server.store.versions() == [1]


def test_predict_gives_the_articles_figure(server: ModelServer) -> None:
    answer = server.predict(PredictRequest.model_validate({"inputs": [[1, 0, 0]]}).inputs)
    assert answer["model_version"] == 1
    assert float(answer["predictions"][0]) == pytest.approx(0.99993704, abs=5e-9)


def test_rows_of_the_wrong_width_are_refused(server: ModelServer) -> None:
    with pytest.raises(errors.ValidationFailed, match="do not fit"):
        server.predict(PredictRequest.model_validate({"inputs": [[1, 0]]}).inputs)


def test_retrain_limits(server: ModelServer) -> None:
    rows = {"inputs": [[0, 0, 1]] * 5, "targets": [0] * 5}
    with pytest.raises(errors.PayloadTooLarge):
        server.retrain(RetrainRequest.model_validate(rows))
    wide = {"inputs": [[0, 0, 1, 1]], "targets": [1]}
    with pytest.raises(errors.ValidationFailed, match="too many inputs"):
        server.retrain(RetrainRequest.model_validate(wide))
    assert server.store.versions() == [1]


def test_retrain_then_rollback_serves_the_old_weights_as_a_new_version(
    server: ModelServer,
) -> None:
    first = server.model.get().neuron.weights.copy()
    body = {"inputs": [[0, 0, 1], [1, 1, 1]], "targets": [1, 0], "iterations": 500}
    assert server.retrain(RetrainRequest.model_validate(body)).model_version == 2
    info = server.rollback(RollbackRequest(version=1))
    assert info.version == 3
    assert np.array_equal(server.model.get().neuron.weights, first)
    with pytest.raises(errors.NotFound):
        server.rollback(RollbackRequest(version=99))
