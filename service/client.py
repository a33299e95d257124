"""Command-line client for training jobs: ``python -m service.client train DATA.csv --target y``.

Standard library only, and nothing else from service/: it runs from a terminal that has none of
the server's dependencies. Exit status: 0 done, 1 the job or a call failed, 2 usage, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import sys
import time
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

PROG = "python -m service.client"
DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT = 60.0  # seconds per connect, send or read: a big upload is many sends
CHUNK = 64 * 1024
ENDED = ("succeeded", "failed", "cancelled")
BAR_WIDTH = 30
PLAIN_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130  # argparse exits 2 on a usage error

Job = dict[str, Any]
Body = Iterable[bytes] | None
Headers = Mapping[str, str] | None
Answer = tuple[http.client.HTTPResponse, Any]


class ClientError(Exception):
    """A failure to report on stderr (one line, then any details) before exiting 1."""


def describe(envelope: Any) -> str | None:
    """An error envelope's message, then its details ("loc: msg") one per line; None if none."""
    error = envelope.get("error") if isinstance(envelope, dict) else None
    if not isinstance(error, dict):
        return None
    lines = [str(error.get("message") or error.get("code") or "unknown error")]
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and "msg" in detail:
            loc = ".".join(str(part) for part in detail.get("loc") or [])
            lines.append(f"  {loc}: {detail['msg']}" if loc else f"  {detail['msg']}")
        else:
            lines.append(f"  {json.dumps(detail)}")
    return "\n".join(lines)


class Api:
    """The admin API of one server, a new connection per call. http.client, not urllib.request:
    a server may answer (401, 413) and close before it has read the whole upload, which urllib
    reports as a broken pipe while here the answer is still read; nor may *_proxy reroute it."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.parts = url.rstrip("/"), urllib.parse.urlsplit(url)
        self.auth = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: Body = None, headers: Headers = None) -> Answer:
        """The answer and its JSON; ClientError on an error status or none at all."""
        response, raw = self._exchange(method, path, body, {**self.auth, **(headers or {})})
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if response.status >= 400:
            text = describe(answer) or raw.decode(errors="replace")[:200].strip()
            raise ClientError(f"HTTP {response.status}: {text or response.reason}")
        if answer is None:
            raise ClientError(f"{method} {path}: HTTP {response.status} without a JSON answer")
        return response, answer

    def _exchange(
        self, method: str, path: str, body: Body, headers: Mapping[str, str]
    ) -> tuple[http.client.HTTPResponse, bytes]:
        secure = self.parts.scheme == "https"
        kind = http.client.HTTPSConnection if secure else http.client.HTTPConnection
        connection = kind(self.parts.netloc, timeout=TIMEOUT)
        try:
            # A server that answers before taking the whole body may close: read that answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.request(method, self.parts.path.rstrip("/") + path, body, headers)
            response = connection.getresponse()
            return response, response.read()
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ClientError(f"no answer from {self.url}: {reason}") from None
        finally:
            connection.close()


def job_path(job_id: str) -> str:
    return f"/admin/jobs/{urllib.parse.quote(job_id, safe='')}"


class Progress:
    """A bar on stderr: one line rewritten on a terminal, else a plain line every few seconds."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.tty = stream, stream.isatty()
        self.shown, self.last = "", float("-inf")

    def show(self, fraction: float, label: str) -> None:
        filled = round(BAR_WIDTH * min(max(fraction, 0.0), 1.0))
        line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%}  {label}"
        if line == self.shown or (not self.tty and time.monotonic() - self.last < PLAIN_EVERY):
            return
        self.stream.write("\r" + line.ljust(len(self.shown)) if self.tty else line + "\n")
        self.stream.flush()
        self.shown, self.last = line, time.monotonic()

    def end(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()


def read_chunks(file: BinaryIO, size: int, progress: Progress) -> Iterator[bytes]:
    """The file a chunk at a time, moving the upload bar as each is read to be sent."""
    sent = 0  # no further than the size stat() gave, which Content-Length may have said
    while sent < size and (chunk := file.read(min(CHUNK, size - sent))):
        sent += len(chunk)
        progress.show(sent / size, "uploading")
        yield chunk
    progress.end()


def gzipped(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """gzip (zlib's, with a gzip header) of the chunks, compressed as they come."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for chunk in chunks:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


def training_query(args: argparse.Namespace) -> str:
    pairs = [("target", args.target)] if args.target else []
    pairs += [("standardize", "true")] if args.standardize else []
    pairs += [tuple(item.split("=", 1)) for item in args.set]
    return "?" + urllib.parse.urlencode(pairs) if pairs else ""


def submit(api: Api, args: argparse.Namespace) -> tuple[Job, str]:
    """POST the file to /admin/jobs, streamed; the job and its absolute URL."""
    path: Path = args.data
    size = path.stat().st_size
    is_json = path.suffix.lower() == ".json"
    headers = {"Content-Type": "application/json" if is_json else "text/csv; charset=utf-8"}
    with path.open("rb") as file:
        body: Iterable[bytes] = read_chunks(file, size, Progress(sys.stderr))
        if args.gzip:
            # Compressed on the fly and sent with chunked transfer encoding (http.client does
            # that for a body of unknown length): no temporary file, the file read once, the
            # upload under way at once. The price: the server sees the size only at the end.
            body, headers["Content-Encoding"] = gzipped(body), "gzip"
        else:
            headers["Content-Length"] = str(size)
        response, job = api.call("POST", "/admin/jobs" + training_query(args), body, headers)
    location = response.getheader("Location") or job_path(str(job["id"]))
    return job, urllib.parse.urljoin(api.url + "/", location)


def wait(api: Api, job: Job, interval: float) -> Job:
    """Poll the job until it ends, showing its progress."""
    progress = Progress(sys.stderr)
    while True:
        state = str(job.get("state"))
        done = job.get("progress") or {}
        label = state if state in ENDED else str(done.get("phase") or state)
        progress.show(float(done.get("fraction") or 0.0), label)
        if state in ENDED:
            progress.end()
            return job
        time.sleep(interval)
        job = api.call("GET", job_path(str(job["id"])))[1]


def report(job: Job) -> int:
    """Print a succeeded job's result; say why any other ended job did not succeed."""
    if job["state"] == "succeeded":
        print(json.dumps(job.get("result"), indent=2))
        return EXIT_OK
    why = describe(job.get("error"))
    print(f"{PROG}: job {job['id']} {job['state']}" + (f": {why}" if why else ""), file=sys.stderr)
    return EXIT_FAILED


def interrupted(api: Api, job_id: str) -> int:
    """Ctrl-C while waiting: cancel the job rather than leave it training unwatched."""
    after_bar = "\n" if sys.stderr.isatty() else ""
    print(f"{after_bar}{PROG}: interrupted: cancelling job {job_id}", file=sys.stderr)
    try:
        api.call("DELETE", job_path(job_id))
    except ClientError as exc:
        print(f"{PROG}: job {job_id} not cancelled: {exc}", file=sys.stderr)
    return EXIT_INTERRUPTED


def train(api: Api, args: argparse.Namespace) -> int:
    job, location = submit(api, args)
    if args.no_wait:
        print(json.dumps({**job, "location": location}, indent=2))
        return EXIT_OK
    try:
        job = wait(api, job, args.interval)
    except KeyboardInterrupt:
        return interrupted(api, str(job["id"]))
    return report(job)


def show(api: Api, args: argparse.Namespace) -> int:
    """status, cancel and list: print the server's answer."""
    path = job_path(args.job_id) if "job_id" in args else "/admin/jobs"
    print(json.dumps(api.call(args.method, path)[1], indent=2))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Training jobs on neuron-service.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    train_parser(commands.add_parser("train", help="upload data, train on it, wait"))
    for name, method, text in (
        ("status", "GET", "show a job"),
        ("cancel", "DELETE", "cancel a job"),
        ("list", "GET", "list the jobs, newest first"),
    ):
        sub = commands.add_parser(name, help=text)
        if name != "list":
            sub.add_argument("job_id", metavar="JOB_ID")
        sub.set_defaults(command=show, method=method)
    url, token = os.environ.get("NEURON_URL") or DEFAULT_URL, os.environ.get("NEURON_ADMIN_TOKEN")
    for sub in commands.choices.values():
        sub.set_defaults(parser=sub)
        sub.add_argument("--url", default=url, help=f"default: $NEURON_URL, else {DEFAULT_URL}")
        sub.add_argument("--token", default=token, help="default: $NEURON_ADMIN_TOKEN")
    return parser


def train_parser(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("data", type=Path, metavar="DATA", help="a .csv table or .json request")
    sub.add_argument("--target", help="the CSV's target column (default: the last)")
    sub.add_argument("--standardize", action="store_true", help="standardize the features")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="another retrain setting, e.g. iterations=5000 (repeatable)")  # fmt: skip
    sub.add_argument("--gzip", action="store_true", help="compress the upload")
    sub.add_argument("--no-wait", action="store_true", help="print the job and exit")
    sub.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    sub.set_defaults(command=train)


def check(args: argparse.Namespace) -> None:
    """Usage errors argparse cannot see by itself (exit 2)."""
    fail = args.parser.error
    parts = urllib.parse.urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"--url {args.url!r} is not an http:// or https:// URL")
    if not args.token:
        fail("no admin token: pass --token or set NEURON_ADMIN_TOKEN")
    if not getattr(args, "interval", 1) > 0:  # also refuses nan
        fail(f"--interval {args.interval} is not a positive number of seconds")
    for item in getattr(args, "set", []):
        if not item.partition("=")[0].strip() or "=" not in item:
            fail(f"--set {item!r} is not KEY=VALUE")
    data: Path | None = getattr(args, "data", None)
    if data is not None and not data.is_file():
        fail(f"{data}: no such file")
    is_json = data is not None and data.suffix.lower() == ".json"
    if is_json and (args.target or args.standardize or args.set):
        fail("--target, --standardize and --set are for a CSV: a .json request holds them")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check(args)
    try:
        return int(args.command(Api(args.url, args.token), args))
    except ClientError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (| head): no traceback as Python exits
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
