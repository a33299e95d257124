"""Binary tensor data requests (V2 binary extension), good and hostile, with the status each
must get: shared by the reliability suite (real gunicorn) and the binary lane's tests."""

from __future__ import annotations

import json
import struct

from service.settings import Settings

INFER = "/v2/models/neuron/infer"
MAX_BODY = Settings.model_fields["max_body_bytes"].default
MAX_BATCH = Settings.model_fields["max_batch"].default
HEADER = "Inference-Header-Content-Length"
JSON = {"Content-Type": "application/json"}
MIB = 1024 * 1024
NAN = struct.pack("<d", float("nan"))


def tensor(shape: list[int], size: int, datatype: str = "FP64", **more: object) -> dict:
    return {
        "name": "input0",
        "shape": shape,
        "datatype": datatype,
        "parameters": {"binary_data_size": size},
        **more,
    }


def binary(
    header: dict | bytes, data: bytes, length: int | str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A body of a JSON header and binary data; the header length given, or the true one."""
    # json, not orjson: some headers hold integers past 64 bits.
    encoded = header if isinstance(header, bytes) else json.dumps(header).encode()
    value = str(len(encoded) if length is None else length)
    return encoded + data, {HEADER: value, "Content-Type": "application/octet-stream"}


def rows(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}d", *values)


ROW = rows(1, 0, 0)
VALID = {"inputs": [tensor([1, 3], 24)]}

# (id, body and headers, expected status)
CASES: list[tuple[str, tuple[bytes, dict[str, str]], int]] = [
    ("valid", binary(VALID, ROW), 200),
    ("valid, binary out", binary({**VALID, "parameters": {"binary_data_output": True}}, ROW), 200),
    ("valid FP16", binary({"inputs": [tensor([1, 3], 6, "FP16")]}, struct.pack("<3e", 1, 0, 0)), 200),
    ("valid UINT64 at its end", binary({"inputs": [tensor([1, 3], 24, "UINT64")]}, struct.pack("<3Q", 2**64 - 1, 0, 0)), 200),
    (f"batch of MAX ({MAX_BATCH})", binary({"inputs": [tensor([MAX_BATCH, 3], MAX_BATCH * 24)]}, ROW * MAX_BATCH), 200),
    (f"batch of MAX+1 ({MAX_BATCH + 1})", binary({"inputs": [tensor([MAX_BATCH + 1, 3], (MAX_BATCH + 1) * 24)]}, ROW * (MAX_BATCH + 1)), 400),
    ("size below shape x datatype", binary({"inputs": [tensor([1, 3], 16)]}, ROW[:16]), 400),
    ("size above shape x datatype", binary({"inputs": [tensor([1, 3], 32)]}, ROW + ROW[:8]), 400),
    ("size right for FP32, datatype FP64", binary({"inputs": [tensor([2, 3], 24)]}, ROW), 400),
    ("huge size", binary({"inputs": [tensor([1, 3], 2**62)]}, ROW), 400),
    ("size past 2**64", binary({"inputs": [tensor([1, 3], 2**70)]}, ROW), 400),
    ("negative size", binary({"inputs": [tensor([1, 3], -24)]}, ROW), 400),
    ("size as a string", binary({"inputs": [tensor([1, 3], "24")]}, ROW), 400),  # type: ignore[arg-type]
    ("size as a float", binary({"inputs": [tensor([1, 3], 24.0)]}, ROW), 400),  # type: ignore[arg-type]
    ("size as a boolean", binary({"inputs": [tensor([1, 3], True)]}, ROW), 400),  # type: ignore[arg-type]
    ("missing binary section", binary(VALID, b""), 400),
    ("half a section", binary(VALID, ROW[:12]), 400),
    ("extra binary section", binary(VALID, ROW + ROW), 400),
    ("one stray byte", binary(VALID, ROW + b"\x00"), 400),
    ("binary bytes, JSON input", binary({"inputs": [{"name": "input0", "shape": [1, 3], "datatype": "FP64", "data": [1, 0, 0]}]}, ROW), 400),
    ("JSON data and binary_data_size", binary({"inputs": [tensor([1, 3], 24, data=[1, 0, 0])]}, ROW), 400),
    ("neither data nor binary", binary({"inputs": [{"name": "input0", "shape": [1, 3], "datatype": "FP64"}]}, b""), 400),
    ("binary_data_size, no header length", (json.dumps(VALID).encode() + ROW, {"Content-Type": "application/octet-stream"}), 400),
    ("binary_data_size, no header length, no content type", (json.dumps(VALID).encode() + ROW, {}), 400),
    ("header length past the body", binary(VALID, ROW, length=len(json.dumps(VALID).encode()) + 25), 400),
    ("header length far past the body", binary(VALID, ROW, length=2**63), 400),
    ("header length cuts the JSON", binary(VALID, ROW, length=len(json.dumps(VALID).encode()) - 1), 400),
    ("header length takes binary bytes", binary(VALID, ROW, length=len(json.dumps(VALID).encode()) + 1), 400),
    ("header length negative", binary(VALID, ROW, length=-1), 400),
    ("header length 1.5", binary(VALID, ROW, length="1.5"), 400),
    ("header length hex", binary(VALID, ROW, length="0x10"), 400),
    ("header length empty", binary(VALID, ROW, length=""), 400),
    ("header length 0 (raw binary)", binary(VALID, ROW, length=0), 400),
    ("header length with 30 digits", binary(VALID, ROW, length="9" * 30), 400),
    ("NaN", binary(VALID, rows(1, 0, float("nan"))), 400),
    ("+inf", binary(VALID, rows(float("inf"), 0, 0)), 400),
    ("-inf", binary(VALID, rows(float("-inf"), 0, 0)), 400),
    ("NaN with a payload", binary(VALID, b"\x01\x00\x00\x00\x00\x00\xf8\x7f" + ROW[8:]), 400),
    ("FP32 NaN", binary({"inputs": [tensor([1, 3], 12, "FP32")]}, struct.pack("<3f", 0, 0, float("nan"))), 400),
    ("FP16 inf", binary({"inputs": [tensor([1, 3], 6, "FP16")]}, struct.pack("<3e", 0, float("inf"), 0)), 400),
    ("BOOL", binary({"inputs": [tensor([1, 3], 3, "BOOL")]}, b"\x01\x00\x00"), 400),
    ("BYTES", binary({"inputs": [tensor([1, 1], 5, "BYTES")]}, b"\x01\x00\x00\x00a"), 400),
    ("BF16", binary({"inputs": [tensor([1, 3], 6, "BF16")]}, b"\x00" * 6), 400),
    ("shape of three dimensions", binary({"inputs": [tensor([1, 1, 3], 24)]}, ROW), 400),
    ("flat shape", binary({"inputs": [tensor([3], 24)]}, ROW), 400),
    ("wrong width", binary({"inputs": [tensor([3, 1], 24)]}, ROW), 400),
    ("zero rows", binary({"inputs": [tensor([0, 3], 0)]}, b""), 400),
    ("zero width", binary({"inputs": [tensor([1, 0], 0)]}, b""), 400),
    ("negative shape", binary({"inputs": [tensor([-1, -3], 24)]}, ROW), 400),
    ("huge shape", binary({"inputs": [tensor([1, 2**62], 24)]}, ROW), 400),
    ("two binary inputs", binary({"inputs": [tensor([1, 3], 24), tensor([1, 3], 24)]}, ROW + ROW), 400),
    ("binary input of another name", binary({"inputs": [{**tensor([1, 3], 24), "name": "input-0"}]}, ROW), 200),
    ("two binary inputs of other names", binary({"inputs": [{**tensor([1, 3], 24), "name": "a"}, {**tensor([1, 3], 24), "name": "b"}]}, ROW + ROW), 400),
    ("KServe SDK's header: id and model_name", binary({**VALID, "id": "3f2a", "model_name": "neuron"}, ROW), 200),
    ("model_name of another model", binary({**VALID, "model_name": "iris"}, ROW), 400),
    ("model_version of no version", binary({**VALID, "model_version": "9"}, ROW), 400),
    ("model_name not a string", binary({**VALID, "model_name": ["neuron"]}, ROW), 400),
    ("unknown fields, top and tensor", binary({"inputs": [tensor([1, 3], 24, shape_hint=[1, 3])], "priority": 1}, ROW), 200),
    ("duplicate key in the header", binary(json.dumps(VALID).encode()[:-1] + b', "inputs": []}', ROW), 400),
    ("duplicate binary_data_size", binary(json.dumps(VALID).encode().replace(b'"binary_data_size": 24', b'"binary_data_size": 0, "binary_data_size": 24'), ROW), 400),
    ("header is not JSON", binary(b"not json", ROW), 400),
    ("header is a list", binary(b"[1, 2, 3]", ROW), 400),
    ("header invalid UTF-8", binary(json.dumps({**VALID, "id": "x"}).encode().replace(b'"x"', b'"\xff"'), ROW), 400),
    ("header NaN literal", binary(json.dumps(VALID).encode()[:-1] + b', "id": NaN}', ROW), 400),
    ("binary_data_output not a boolean", binary({**VALID, "parameters": {"binary_data_output": 1}}, ROW), 400),
    ("binary_data not a boolean", binary({**VALID, "outputs": [{"name": "output0", "parameters": {"binary_data": "yes"}}]}, ROW), 400),
    ("text/plain", (binary(VALID, ROW)[0], {HEADER: str(len(json.dumps(VALID).encode())), "Content-Type": "text/plain"}), 415),
    ("body of MAX_BODY+1 bytes", binary({"inputs": [tensor([1, 3], 24)]}, ROW + b"\x00" * (MAX_BODY + 1 - len(json.dumps(VALID).encode()) - 24)), 413),
]  # fmt: skip
