"""Compressed bodies: gzip and deflate requests decoded before every reader, gzip answers.

Every body is compressed here with Python's own gzip and zlib modules, and every answer is
compared with the same request sent plain.
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from service.http.encoding import MAX_RATIO, MIN_COMPRESSED_BYTES
from service.settings import Settings

from .conftest import AUTH

JSON = {"Content-Type": "application/json"}
MAX_BODY = Settings.model_fields["max_body_bytes"].default
V2 = "/v2/models/neuron/infer"
ROWS = np.random.default_rng(3).uniform(-2, 2, (50, 3)).round(6)


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


ENCODERS = {
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "deflate": zlib.compress,  # zlib-wrapped, as RFC 9110 and tritonclient mean it
    "deflate (raw)": raw_deflate,  # as some clients send it
    "gzip (two members)": lambda data: gzip.compress(data[:7]) + gzip.compress(data[7:]),
}


def header_of(name: str) -> str:
    return name.split(" ")[0]


def binary_v2(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = json.dumps({"inputs": [{"name": "input0", "shape": list(rows.shape),
                                     "datatype": "FP64", "parameters": {"binary_data_size": rows.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()  # fmt: skip
    return header + rows.astype("<f8").tobytes(), {
        "Inference-Header-Content-Length": str(len(header))
    }


def requests_of_every_reader() -> dict[str, tuple[str, bytes, dict[str, str]]]:
    csv = "a,b,c,y\n" + "".join(f"{a},{b},{c},{int(a > 0)}\n" for a, b, c in ROWS)
    binary, binary_headers = binary_v2(ROWS)
    tensor = {"name": "input0", "shape": [50, 3], "datatype": "FP64", "data": ROWS.ravel().tolist()}
    return {
        "predict (numbers-only fast path)": ("/predict", json.dumps({"inputs": ROWS.tolist()}).encode(), JSON),
        "predict (general reader)": ("/predict", json.dumps({"inputs": ROWS.tolist()}).replace('"inputs"', '"\\u0069nputs"').encode(), JSON),
        "evaluate": ("/evaluate", json.dumps({"inputs": ROWS.tolist(), "targets": [1] * 50}).encode(), JSON),
        "retrain, CSV": ("/admin/retrain?standardize=true", csv.encode(), {**AUTH, "Content-Type": "text/csv"}),
        "V2 JSON": (V2, json.dumps({"inputs": [tensor]}).encode(), JSON),
        "V2 binary (the lane)": (V2, binary, binary_headers),
        "V2 binary (Flask's view)": ("/v2/models/neuron/versions/1/infer", binary, binary_headers),
    }  # fmt: skip


READERS = requests_of_every_reader()


@pytest.mark.parametrize("encoding", list(ENCODERS))
@pytest.mark.parametrize("reader", list(READERS))
def test_every_reader_gets_the_decoded_body(
    client: FlaskClient, reader: str, encoding: str
) -> None:
    path, body, headers = READERS[reader]
    plain = client.post(path, data=body, headers=headers)
    assert plain.status_code == 200, plain.get_data()
    packed = ENCODERS[encoding](body)
    assert packed != body
    sent = client.post(
        path, data=packed, headers={**headers, "Content-Encoding": header_of(encoding)}
    )
    assert sent.status_code == 200, sent.get_data()
    if path.startswith("/admin"):  # a new version each time: compare what it learned
        first, second = plain.get_json(), sent.get_json()
        assert (first["loss"], first["accuracy"]) == (second["loss"], second["accuracy"])
    else:
        assert sent.get_data() == plain.get_data()


def test_identity_and_a_header_without_a_body_change_nothing(client: FlaskClient) -> None:
    body = json.dumps({"inputs": [[1, 0, 0]]}).encode()
    plain = client.post("/predict", data=body, headers=JSON).get_data()
    assert (
        client.post(
            "/predict", data=body, headers={**JSON, "Content-Encoding": "identity"}
        ).get_data()
        == plain
    )
    assert client.get("/model", headers={"Content-Encoding": "gzip"}).status_code == 200


def _error(response: Any, path: str) -> str:
    body = response.get_json()
    return body["error"] if path.startswith("/v2") else body["error"]["message"]


BODY = json.dumps({"inputs": [[1, 0, 0]]}).encode()
V2_BODY = json.dumps(
    {"inputs": [{"name": "input0", "shape": [1, 3], "datatype": "FP64", "data": [1, 0, 0]}]}
).encode()


@pytest.mark.parametrize("path", ["/predict", V2])
@pytest.mark.parametrize(
    ("case", "encoding", "data", "status", "needle", "code"),
    [
        ("unknown encoding", "br", lambda b: b, 415, "Content-Encoding 'br' is not accepted: send the body as it is, or with one of gzip, deflate", "unsupported_media_type"),
        ("two encodings", "gzip, gzip", lambda b: gzip.compress(gzip.compress(b)), 415, "one of gzip, deflate", "unsupported_media_type"),
        ("plain bytes said to be gzip", "gzip", lambda b: b, 400, "the body is not valid gzip", "malformed_encoding"),
        ("gzip said to be deflate", "deflate", lambda b: gzip.compress(b), 400, "the body is not valid deflate", "malformed_encoding"),
        ("truncated gzip", "gzip", lambda b: gzip.compress(b)[:-9], 400, "the stream ends before its end", "malformed_encoding"),
        ("gzip without its trailer", "gzip", lambda b: gzip.compress(b)[:-8], 400, "the stream ends before its end", "malformed_encoding"),
        ("one flipped byte", "gzip", lambda b: (lambda g: g[:15] + bytes([g[15] ^ 0xFF]) + g[16:])(gzip.compress(b)), 400, "the body is not valid gzip", "malformed_encoding"),
        ("junk after a deflate stream", "deflate", lambda b: zlib.compress(b) + b"junk", 400, "bytes follow the stream's end", "malformed_encoding"),
        ("junk after a gzip member", "gzip", lambda b: gzip.compress(b) + b"junk", 400, "the body is not valid gzip", "malformed_encoding"),
        ("empty gzip", "gzip", lambda b: b"\x1f", 400, "the stream ends before its end", "malformed_encoding"),
    ],
)  # fmt: skip
def test_bad_encodings_get_a_clear_error_in_the_apis_own_form(
    client: FlaskClient,
    path: str,
    case: str,
    encoding: str,
    data: Any,
    status: int,
    needle: str,
    code: str,
) -> None:
    body = V2_BODY if path == V2 else BODY
    response = client.post(path, data=data(body), headers={**JSON, "Content-Encoding": encoding})
    assert response.status_code == status, response.get_data()
    assert needle in _error(response, path)
    if path == "/predict":
        assert response.get_json()["error"]["code"] == code


def test_nested_gzip_is_decoded_once_and_the_inside_is_not_json(client: FlaskClient) -> None:
    twice = gzip.compress(gzip.compress(BODY))
    response = client.post("/predict", data=twice, headers={**JSON, "Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_json"


@pytest.mark.parametrize("path", ["/predict", V2, "/admin/retrain"])
def test_a_body_decoding_past_the_limit_is_a_413_naming_it(client: FlaskClient, path: str) -> None:
    bomb = gzip.compress(b" " * (MAX_BODY + 1), 9)
    response = client.post(path, data=bomb, headers={**JSON, **AUTH, "Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert f"more than the limit of {MAX_BODY} bytes" in _error(response, path)
    assert "Connection" not in response.headers  # the rest was read: the connection goes on
    # At the limit exactly: read. JSON whitespace at random, so it is not a ratio bomb either.
    blanks = (
        np.random.default_rng(6).choice(list(b" \t\n\r"), MAX_BODY - len(BODY)).astype(np.uint8)
    )
    exactly = gzip.compress(blanks.tobytes() + BODY, 9)
    at_limit = client.post("/predict", data=exactly, headers={**JSON, "Content-Encoding": "gzip"})
    assert at_limit.status_code == 200


def test_a_compressed_body_over_the_limit_is_refused_before_reading(client: FlaskClient) -> None:
    response = client.post(
        "/predict", data=b"\x1f" * (MAX_BODY + 1), headers={**JSON, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413
    assert "over the limit" in response.get_json()["error"]["message"]
    assert response.headers["Connection"] == "close"  # left unread: no further request on it


def test_past_a_mib_the_ratio_is_capped(client: FlaskClient) -> None:
    # 2 MiB of one repeated row: legitimate JSON, but ~700 bytes per compressed byte.
    filler = b'{"inputs": [' + b"[1, 0, 0], " * 190_000 + b"[1, 0, 0]]}"
    response = client.post(
        "/predict", data=gzip.compress(filler, 9), headers={**JSON, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413
    assert f"over {MAX_RATIO} bytes per compressed byte" in response.get_json()["error"]["message"]
    # the same kind of body under a MiB is fine (and too many rows, which is another answer)
    small = b'{"inputs": [' + b"[1, 0, 0], " * 9_999 + b"[1, 0, 0]]}"
    ok = client.post(
        "/predict", data=gzip.compress(small, 9), headers={**JSON, "Content-Encoding": "gzip"}
    )
    assert ok.status_code == 200


# -- answers ------------------------------------------------------------------------------------


def big_rows() -> list[list[float]]:
    return np.random.default_rng(4).random((2000, 3)).round(6).tolist()


@pytest.mark.parametrize(
    "accept", ["gzip", "gzip, deflate", "deflate, gzip;q=0.5", "*", "br, GZIP"]
)
def test_big_answers_are_gzipped_for_clients_that_take_gzip(
    client: FlaskClient, accept: str
) -> None:
    plain = client.post("/predict", json={"inputs": big_rows()})
    assert "Content-Encoding" not in plain.headers and "Accept-Encoding" not in plain.headers.get(
        "Vary", ""
    )
    packed = client.post(
        "/predict", json={"inputs": big_rows()}, headers={"Accept-Encoding": accept}
    )
    assert packed.headers["Content-Encoding"] == "gzip"
    assert packed.headers["Vary"] == "Accept-Encoding"
    assert (
        int(packed.headers["Content-Length"])
        == len(packed.get_data())
        < len(plain.get_data()) / 1.5
    )
    assert gzip.decompress(packed.get_data()) == plain.get_data()


@pytest.mark.parametrize("accept", ["identity", "deflate", "gzip;q=0", "gzip; q=0.0", "gzip;q=x"])
def test_a_client_that_refuses_gzip_gets_plain(client: FlaskClient, accept: str) -> None:
    answer = client.post(
        "/predict", json={"inputs": big_rows()}, headers={"Accept-Encoding": accept}
    )
    assert "Content-Encoding" not in answer.headers
    assert len(json.loads(answer.get_data())["predictions"]) == 2000


def test_small_answers_stay_plain(client: FlaskClient) -> None:
    answer = client.post(
        "/predict", json={"inputs": [[1, 0, 0]]}, headers={"Accept-Encoding": "gzip"}
    )
    assert len(answer.get_data()) < MIN_COMPRESSED_BYTES
    assert "Content-Encoding" not in answer.headers and "Vary" not in answer.headers


def test_a_binary_v2_answer_is_gzipped_whole_and_keeps_its_header_length(
    client: FlaskClient,
) -> None:
    rows = np.random.default_rng(5).random((2000, 3))
    body, headers = binary_v2(rows)
    plain = client.post(V2, data=body, headers=headers)
    packed = client.post(V2, data=body, headers={**headers, "Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert (
        packed.headers["Inference-Header-Content-Length"]
        == plain.headers["Inference-Header-Content-Length"]
    )
    data = gzip.decompress(packed.get_data())
    assert data == plain.get_data()
    json_length = int(plain.headers["Inference-Header-Content-Length"])
    assert len(struct.unpack(f"<{2000}d", data[json_length:])) == 2000


def test_cors_vary_and_gzip_vary_are_one_header(tmp_path: Any) -> None:
    from service.app import create_app

    app = create_app(Settings(model_dir=tmp_path, cors_origins="https://a.example"))
    answer = app.test_client().post(
        "/predict", json={"inputs": big_rows()},
        headers={"Accept-Encoding": "gzip", "Origin": "https://a.example"},
    )  # fmt: skip
    assert answer.headers.getlist("Vary") == ["Accept-Encoding, Origin"]


def test_a_gzipped_answer_is_counted_under_its_route(client: FlaskClient) -> None:
    """The answer starts after Flask has returned: its route must still label the metrics."""
    from .metrics_text import sample

    key = (
        'neuron_http_request_duration_seconds_count{endpoint="/predict",method="POST",status="200"}'
    )
    before = sample(client.get("/metrics").get_data(as_text=True), key, default=0.0)
    packed = client.post(
        "/predict", json={"inputs": big_rows()}, headers={"Accept-Encoding": "gzip"}
    )
    assert packed.headers["Content-Encoding"] == "gzip"
    assert sample(client.get("/metrics").get_data(as_text=True), key) == before + 1


def test_a_head_answer_is_never_gzipped(client: FlaskClient) -> None:
    """A HEAD's body is empty: gzipping it would announce a length the GET does not have."""
    headers = {"Accept-Encoding": "gzip"}
    full = client.get("/openapi.json", headers=headers)
    assert full.headers["Content-Encoding"] == "gzip"
    head = client.head("/openapi.json", headers=headers)
    assert head.status_code == 200 and "Content-Encoding" not in head.headers
    assert int(head.headers["Content-Length"]) == len(gzip.decompress(full.get_data()))
