"""tritonclient.grpc with its defaults against a server: run as a child process by the tests.

Triton's client registers its own protobuf package ``inference`` (grpc_service.proto) and
KServe's SDK, which other tests import, registers the same names from grpc_predict_v2.proto:
one process cannot hold both (protobuf refuses duplicate symbols). So the tests run this
module as ``python -m tests.integration.tritongrpc HOST:PORT OUT.npz`` and read what it wrote.
"""

from __future__ import annotations

import json
import sys

import numpy as np

DATATYPES = {"FP64": np.float64, "FP32": np.float32, "INT32": np.int32}
COUNTS = (1, 10_000)  # one row; the default NEURON_MAX_BATCH


def rows_of(datatype: str, count: int) -> np.ndarray:
    """The rows sent for one case: seeded, so the test can send the same ones to /predict."""
    generator = np.random.default_rng(count)
    dtype = DATATYPES[datatype]
    if np.issubdtype(dtype, np.integer):
        return generator.integers(-50, 50, size=(count, 3)).astype(dtype)
    return generator.uniform(-3, 3, size=(count, 3)).astype(dtype)


def case_key(datatype: str, count: int) -> str:
    return f"{datatype}-{count}"


def main(target: str, out: str) -> None:
    import tritonclient.grpc as triton  # here only: see the module docstring

    client = triton.InferenceServerClient(target)
    results: dict[str, np.ndarray] = {}
    for datatype in DATATYPES:
        for count in COUNTS:
            tensor = triton.InferInput("input0", [count, 3], datatype)
            tensor.set_data_from_numpy(rows_of(datatype, count))  # raw_input_contents
            answer = client.infer("neuron", [tensor])
            results[case_key(datatype, count)] = answer.as_numpy("output0")
            results[case_key(datatype, count) + "-version"] = np.array(
                answer.get_response().model_version
            )
    facts = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("neuron"),
        "version_ready": client.is_model_ready("neuron", "1"),
        "server_metadata": client.get_server_metadata(as_json=True),
        "model_metadata": client.get_model_metadata("neuron", as_json=True),
    }
    client.close()
    results["facts"] = np.array(json.dumps(facts))
    np.savez(out, **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
