"""Generate service/oip/rpc's Python stubs from grpc_predict_v2.proto with grpcio-tools.

`make grpc-stubs` runs this; tests/test_grpc_stubs.py generates into a temporary directory
and compares, so the committed stubs are always what the proto and grpcio-tools give.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

RPC_DIR = Path(__file__).resolve().parents[1] / "service" / "oip" / "rpc"
PROTO = "grpc_predict_v2.proto"
STUBS = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")
# protoc writes a top-level import; the stubs live in a package. The proto keeps its bare file
# name so that its descriptor is the very one KServe's SDK registers (both load in one process).
_TOP_LEVEL_IMPORT = "import grpc_predict_v2_pb2 as"
_PACKAGE_IMPORT = "from . import grpc_predict_v2_pb2 as"


def generate(out_dir: Path) -> list[Path]:
    """Write the stubs of RPC_DIR/PROTO into ``out_dir``; SystemExit if protoc fails."""
    out_dir.mkdir(parents=True, exist_ok=True)
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{RPC_DIR}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(RPC_DIR / PROTO),
        ]
    )
    if status != 0:
        raise SystemExit(f"protoc failed on {PROTO} with status {status}")
    services = out_dir / STUBS[2]
    text = services.read_text()
    if _TOP_LEVEL_IMPORT not in text:
        raise SystemExit(f"{services.name}: no {_TOP_LEVEL_IMPORT!r} to make relative")
    services.write_text(text.replace(_TOP_LEVEL_IMPORT, _PACKAGE_IMPORT, 1))
    return [out_dir / name for name in STUBS]


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else RPC_DIR):
        print(path)
