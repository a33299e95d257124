"""python -m service.client, run as a subprocess against a real gunicorn on 127.0.0.1."""

from __future__ import annotations

import json
import os
import pty
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from .server import ROOT, TOKEN, Gunicorn, free_port

TIMEOUT = 60  # seconds any one client run may take
# With long_csv: a job that trains for a minute or more (1,000,000 is the server's limit)
LONG = ["--target", "y", "--set", "iterations=1000000"]
FEATURES = ["a", "b"]
# A job that trains in a moment and is promoted
QUICK = ["--target", "y", "--standardize", "--set", "iterations=300", "--set", "force=true"]


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """One worker (and gunicorn's dirty arbiter for the jobs): a 2-core machine trains too."""
    gunicorn = Gunicorn(tmp_path_factory.mktemp("client"), workers=1)
    try:
        yield gunicorn.start()
    finally:
        gunicorn.stop()


def client_env(url: str, token: str | None = TOKEN) -> dict[str, str]:
    """This environment without NEURON_*, then the client's URL and token as a user sets them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURON_")}
    env["NEURON_URL"] = url
    if token is not None:
        env["NEURON_ADMIN_TOKEN"] = token
    return env


def command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "service.client", *map(str, args)]


def run(url: str, *args: str | Path, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), cwd=ROOT, env=client_env(url, token), capture_output=True, text=True,
        timeout=TIMEOUT,
    )  # fmt: skip


def rows(count: int, seed: int = 0) -> list[list[int]]:
    """Separable rows a, b, y: y is whether a > b."""
    rng = random.Random(seed)
    pairs = [(rng.randint(0, 99), rng.randint(0, 99)) for _ in range(count)]
    return [[a, b, int(a > b)] for a, b in pairs if a != b]


def write_csv(path: Path, table: Sequence[Sequence[object]], header: str = "a,b,y") -> Path:
    path.write_text("\n".join([header, *(",".join(map(str, row)) for row in table)]) + "\n")
    return path


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "data.csv", rows(300))


@pytest.fixture
def long_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "long.csv", rows(3000))


def newest_job(server: Gunicorn) -> dict[str, Any]:
    answer = server.get("/admin/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["jobs"][0]  # type: ignore[no-any-return]


def wait_for_state(server: Gunicorn, job_id: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = server.get(f"/admin/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"})
        if seen.json()["state"] == state:
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not {state} in {timeout}s: {seen and seen.text}")


def assert_trained_on(server: Gunicorn, stdout: str) -> None:
    """stdout is a retrain answer whose model now serves, with our CSV's columns."""
    result = json.loads(stdout)
    assert isinstance(result["model_version"], int) and result["promoted"] is True, result
    model = server.get("/model").json()
    assert (model["version"], model["feature_names"]) == (result["model_version"], FEATURES)


def test_a_csv_job_succeeds_and_prints_the_retrain_answer(
    jobs_server: Gunicorn, csv_file: Path
) -> None:
    done = run(jobs_server.url, "train", csv_file, *QUICK, "--interval", "0.1")
    assert done.returncode == 0, done.stderr
    assert_trained_on(jobs_server, done.stdout)
    assert newest_job(jobs_server)["query"]["standardize"] == ["true"]
    # stderr is a pipe here: plain lines, no carriage returns, the upload's bar first
    assert "\r" not in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[0].endswith("100%  uploading")


def test_a_json_request_is_sent_as_json(jobs_server: Gunicorn, tmp_path: Path) -> None:
    table = rows(200, seed=1)
    request = {"inputs": [row[:2] for row in table], "targets": [row[2] for row in table],
               "feature_names": FEATURES, "iterations": 300, "force": True}  # fmt: skip
    (tmp_path / "request.json").write_text(json.dumps(request))
    done = run(jobs_server.url, "train", tmp_path / "request.json", "--interval", "0.1")
    assert done.returncode == 0, done.stderr
    assert_trained_on(jobs_server, done.stdout)
    assert newest_job(jobs_server)["content_type"] == "application/json"


def test_a_gzip_upload_succeeds_and_arrives_compressed(
    jobs_server: Gunicorn, csv_file: Path
) -> None:
    done = run(jobs_server.url, "train", csv_file, *QUICK, "--gzip", "--interval", "0.1")
    assert done.returncode == 0, done.stderr
    assert_trained_on(jobs_server, done.stdout)
    assert 0 < newest_job(jobs_server)["body_bytes"] < csv_file.stat().st_size / 2


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_the_upload_streams_a_file_it_never_holds(
    jobs_server: Gunicorn, tmp_path: Path, gzip: bool
) -> None:
    """48 MB up, the client's peak memory well under that; a bad 2nd line then fails the job."""
    path = tmp_path / "big.csv"
    with path.open("w") as out:
        out.write("a,b,y\n1,x,0\n" + "12345.6789,98765.4321,1\n" * 2_000_000)
    measured = (
        "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", measured, *command("train", path, *(["--gzip"] if gzip else []))],
        cwd=ROOT, env=client_env(jobs_server.url), capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 1 and "line 2" in done.stderr, done.stderr
    peak_mb = int(done.stderr.splitlines()[-1]) / 1024
    assert peak_mb < 0.8 * path.stat().st_size / 1024 / 1024, peak_mb  # about 20 MB streamed
    assert newest_job(jobs_server)["body_bytes"] > 0


def test_a_bad_token_exits_1_with_the_servers_message(
    jobs_server: Gunicorn, csv_file: Path
) -> None:
    bad = "not-the-token-0123456789"
    expected = requests.post(f"{jobs_server.url}/admin/jobs", timeout=10,
                             headers={"Authorization": f"Bearer {bad}"}).json()  # fmt: skip
    done = run(jobs_server.url, "train", csv_file, "--target", "y", "--token", bad)
    assert done.returncode == 1
    assert f"HTTP 401: {expected['error']['message']}" in done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr


def test_a_non_numeric_cell_fails_the_job_naming_its_line(
    jobs_server: Gunicorn, tmp_path: Path
) -> None:
    table: list[list[object]] = [[1, 2, 0], [3, 1, 1], [4, "oops", 1], [5, 6, 0]]
    path = write_csv(tmp_path / "bad.csv", table)
    done = run(jobs_server.url, "train", path, "--target", "y", "--interval", "0.1")
    assert done.returncode == 1
    assert done.stdout == ""
    assert " failed: " in done.stderr and "line 4" in done.stderr and "'oops'" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_wait_then_status_list_and_cancel(jobs_server: Gunicorn, long_csv: Path) -> None:
    url = jobs_server.url
    submitted = run(url, "train", long_csv, "--no-wait", *LONG)
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["state"] in ("queued", "running")
    assert job["location"] == f"{url}/admin/jobs/{job['id']}"
    status = run(url, "status", job["id"])
    assert status.returncode == 0 and json.loads(status.stdout)["id"] == job["id"]
    listed = run(url, "list")
    assert listed.returncode == 0 and json.loads(listed.stdout)["jobs"][0]["id"] == job["id"]
    wait_for_state(jobs_server, job["id"], "running")  # a cancel that stops training
    cancelled = run(url, "cancel", job["id"])
    assert cancelled.returncode == 0, cancelled.stderr
    answer = json.loads(cancelled.stdout)
    assert answer["id"] == job["id"]
    assert answer["state"] == "cancelled" or answer["cancel_requested"] is True
    wait_for_state(jobs_server, job["id"], "cancelled")


def test_cancelling_a_job_that_succeeded_exits_1_with_the_servers_message(
    jobs_server: Gunicorn, csv_file: Path
) -> None:
    url = jobs_server.url
    submitted = run(url, "train", csv_file, *QUICK, "--no-wait")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    wait_for_state(jobs_server, job_id, "succeeded")
    refused = run(url, "cancel", job_id)
    assert refused.returncode == 1 and refused.stdout == ""
    assert f"HTTP 409: job {job_id} has already succeeded" in refused.stderr


@pytest.mark.parametrize("subcommand", ["status", "cancel"])
def test_an_unknown_job_exits_1_with_the_servers_message(
    jobs_server: Gunicorn, subcommand: str
) -> None:
    done = run(jobs_server.url, subcommand, "f" * 32)
    assert done.returncode == 1 and "HTTP 404: no job" in done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr


def _interruptible() -> None:
    """SIGINT as a terminal delivers it: a runner started in the background (a shell without
    job control) hands its children SIGINT ignored, and Python then keeps it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_while_waiting_cancels_the_job(jobs_server: Gunicorn, long_csv: Path) -> None:
    proc = subprocess.Popen(
        command("train", long_csv, "--interval", "0.1", *LONG),
        cwd=ROOT, env=client_env(jobs_server.url), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible,
    )  # fmt: skip
    watchdog = threading.Timer(TIMEOUT, proc.kill)  # a client that hangs ends the reads below
    watchdog.start()
    try:
        assert proc.stderr is not None
        lines = iter(proc.stderr.readline, "")
        # the first line after the upload's is the job's own bar: it is being waited for
        first = [next(lines), next(lines)]
        assert first[0].endswith("uploading\n") and "%" in first[1], first
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
    job = newest_job(jobs_server)
    assert proc.returncode == 130, stderr
    assert f"interrupted: cancelling job {job['id']}" in stderr and stdout == ""
    assert "Traceback" not in stderr
    wait_for_state(jobs_server, job["id"], "cancelled")


def test_on_a_terminal_the_bar_is_one_line_rewritten(jobs_server: Gunicorn, csv_file: Path) -> None:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        command("train", csv_file, *QUICK, "--interval", "0.1"),
        cwd=ROOT, env=client_env(jobs_server.url), stdout=subprocess.PIPE, stderr=terminal,
    )  # fmt: skip
    os.close(terminal)
    shown = bytearray()

    def drain() -> None:  # the terminal's buffer must not fill and stall the client
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        stdout, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
        proc.wait()
    reader.join(timeout=5)
    os.close(controller)
    assert proc.returncode == 0, shown.decode(errors="replace")
    screen = shown.decode()
    assert "\r[" + "#" * 30 + "] 100%  uploading" in screen
    assert screen.rstrip().endswith("] 100%  succeeded")
    assert screen.count("\n") == 2  # one line for the upload, one for the job
    assert json.loads(stdout)["model_version"] >= 1


@pytest.mark.parametrize("subcommand", [["list"], ["status", "0" * 32], ["train", "DATA"]])
def test_an_unreachable_server_is_one_line_and_exit_1(
    csv_file: Path, subcommand: list[str]
) -> None:
    args = [str(csv_file) if arg == "DATA" else arg for arg in subcommand]
    closed = f"http://127.0.0.1:{free_port()}"
    done = run(closed, *args)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and f"no answer from {closed}" in done.stderr
    assert "Connection refused" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "token", "says"),
    [
        ([], TOKEN, "required: COMMAND"),
        (["train"], TOKEN, "required: DATA"),
        (["train", "CSV", "--set", "iterations"], TOKEN, "is not KEY=VALUE"),
        (["train", "JSON", "--target", "y"], TOKEN, "are for a CSV"),
        (["train", "CSV", "--interval", "0"], TOKEN, "not a positive number"),
        (["train", "no-such.csv"], TOKEN, "no such file"),
        (["list", "--url", "ftp://127.0.0.1"], TOKEN, "not an http:// or https:// URL"),
        (["list"], None, "no admin token"),
        (["status"], TOKEN, "required: JOB_ID"),
    ],
)  # fmt: skip
def test_a_usage_error_exits_2(
    tmp_path: Path, csv_file: Path, args: list[str], token: str | None, says: str
) -> None:
    (tmp_path / "request.json").write_text("{}")
    files = {"CSV": str(csv_file), "JSON": str(tmp_path / "request.json")}
    unreachable = f"http://127.0.0.1:{free_port()}"  # a usage error never gets as far as a call
    done = run(unreachable, *[files.get(arg, arg) for arg in args], token=token)
    assert done.returncode == 2
    assert "usage: " in done.stderr and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_the_client_loads_none_of_the_servers_code_or_dependencies() -> None:
    probe = (
        "import sys, service.client; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'flask', 'numpy', 'pydantic', 'gunicorn', 'orjson', 'werkzeug'} "
        "or m.startswith('service.') and m != 'service.client'))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=TIMEOUT)  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
