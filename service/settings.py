"""Settings: one pydantic-settings class, read from NEURON_* environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_TOKEN_LENGTH = 16
# An origin as a browser sends it: scheme, host, optional port; no path, no trailing slash.
ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[^\s/?#:@\[\]]+)(:[0-9]{1,5})?")
POSTGRES_SCHEMES = ("postgresql", "postgres")


class Settings(BaseSettings):
    """Everything the service can be told. Built once at start-up and passed in."""

    # hide_input_in_errors: a refused (too short) admin token is not printed in the error.
    model_config = SettingsConfigDict(
        env_prefix="NEURON_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    model_dir: Path = Field(
        Path("var/model"), description="Directory holding the versioned model documents."
    )
    store_url: SecretStr | None = Field(
        None,
        description="Where model versions live: unset, a path or a file: URL for a directory "
        "(unset: model_dir), or postgresql://user:password@host/db for a store shared by "
        "replicas on several hosts.",
    )
    keep_versions: int = Field(
        5, ge=1, le=1000, description="How many model versions to keep for inspection/rollback."
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token for /admin/*. Unset: the admin endpoints are closed (403).",
    )
    admin_token_file: Path | None = Field(
        None, description="File holding the admin token (Docker secrets); wins over admin_token."
    )
    max_batch: int = Field(10_000, ge=1, description="Most rows one /predict or /evaluate takes.")
    max_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Largest request body; refused from Content-Length before it is read (413).",
    )
    max_train_rows: int = Field(10_000, ge=1, description="Most rows one retrain takes.")
    max_inputs: int = Field(1_000, ge=1, description="Most features a retrained model may have.")
    max_iterations: int = Field(1_000_000, ge=1, description="Most iterations one retrain runs.")
    max_hidden_units: int = Field(
        256,
        ge=1,
        description="Most units a hidden layer may have (a 10,000-row predict holds rows x "
        "units floats: 20 MB at 256).",
    )
    max_hidden_weights: int = Field(
        65_536,
        ge=1,
        description="Most units x features of a hidden layer (its weights are stored with the "
        "model: 65,536 make a document of about 2 MB).",
    )
    max_training_work: int = Field(
        2_000_000_000,
        ge=1,
        description="Cap on rows x inputs x iterations of one retrain, refused up front (422).",
    )
    training_budget_seconds: float = Field(
        20.0, gt=0, description="Wall-clock budget of one training run; past it the run fails."
    )
    worker_timeout_seconds: int = Field(
        30, ge=2, description="gunicorn worker timeout; must exceed the training budget."
    )
    jobs_enabled: bool = Field(
        True,
        description="Run training jobs (POST /admin/jobs) in a process beside the workers "
        "(gunicorn's dirty arbiter); false answers 404 at /admin/jobs.",
    )
    job_dir: Path | None = Field(
        None,
        description="Where job bodies are spooled (and, on the directory store, the jobs' "
        "state is kept). Unset: jobs/ in the store's directory, or var/jobs on PostgreSQL.",
    )
    max_job_body_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="Largest job body, as sent and once decompressed; refused from "
        "Content-Length before it is read (413).",
    )
    max_job_rows: int = Field(2_000_000, ge=1, description="Most rows one training job takes.")
    job_budget_seconds: float = Field(
        3600.0, gt=0, description="Wall-clock budget of one job's training; past it it fails."
    )
    job_heartbeat_timeout_seconds: float = Field(
        30.0,
        ge=2,
        description="A job whose training process has not been heard of for this long is "
        "marked failed (the process or its replica died).",
    )
    keep_jobs: int = Field(100, ge=1, description="Ended jobs kept for GET /admin/jobs.")
    workers: int = Field(2, ge=1, le=64, description="gunicorn worker processes.")
    http_worker: Literal["loop", "threads"] = Field(
        "loop",
        description="How each worker serves HTTP: `loop`, an event loop answering small "
        "requests inline and handing long ones to threads (service/server/loopworker.py); "
        "`threads`, gunicorn's threaded worker (service/server/fairworker.py).",
    )
    threads: int = Field(
        16,
        ge=1,
        le=64,
        description="Threads per worker: the loop worker's pool for long requests; gthread's "
        "threads (a request whose headers are still arriving holds one).",
    )
    bind: str = Field("127.0.0.1:8000", description="Address gunicorn listens on.")
    metrics_enabled: bool = Field(True, description="Observe requests into Prometheus metrics.")
    docs_enabled: bool = Field(
        True,
        description="Serve the interactive API reference at /docs (Swagger UI, its assets from "
        "the service itself); false answers 404 there, for locked-down deployments.",
    )
    log_level: str = Field("info", description="Log level of the JSON logs.")
    cors_origins: str | None = Field(
        None,
        description="Origins whose pages may call the API from a browser (CORS): exact "
        "origins, comma-separated (https://app.example.com,http://localhost:5173), or * for "
        "any page; never with credentials. Unset: no CORS headers at all.",
    )
    cors_admin: bool = Field(
        False,
        description="Answer CORS for /admin/* too, so that a page of an allowed origin may send "
        "the admin token; off unless asked for.",
    )
    grpc_bind: str = Field(
        "127.0.0.1:8081",
        description="Address (host:port) of the Open Inference Protocol over gRPC, served by "
        "every worker on one port (SO_REUSEPORT); empty turns gRPC off.",
    )
    drift_enabled: bool = Field(
        True,
        description="Count every predicted row in its training bins, for GET /model/drift and "
        "the neuron_input_drift_* metrics; false leaves the serving path untouched.",
    )
    drift_window_seconds: float = Field(
        60.0,
        ge=6,
        le=86_400,
        description="The recent window drift is measured over, in six steps: a shift shows "
        "within about a sixth of it and has left it a whole window later.",
    )
    drift_threshold: float = Field(
        0.25,
        gt=0,
        description="Population stability index above which a feature is drifting (0.25 is "
        "the usual 'significant shift'; docs/metrics.md).",
    )
    drift_min_rows: int = Field(
        200,
        ge=1,
        description="Rows the window needs before a score is given: on fewer, chance alone "
        "moves the index by about (bins - 1) / rows.",
    )
    drift_bins: int = Field(
        10, ge=2, le=100, description="Quantile bins per feature in a new model's statistics."
    )
    drift_top_features: int = Field(
        10,
        ge=1,
        le=100,
        description="Features with a score series in /metrics (the worst ones): the series "
        "stay bounded however many features a model has.",
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.training_budget_seconds >= self.worker_timeout_seconds:
            raise ValueError(
                "training_budget_seconds must be shorter than worker_timeout_seconds, "
                "or gunicorn would kill a worker in the middle of a retrain"
            )
        store_kind(self.store())  # refuses an unknown scheme at start-up, with its name
        self.cors()  # refuses a malformed origin at start-up, naming it
        token = self.token()
        if token is not None and len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the admin token must be at least {MIN_TOKEN_LENGTH} characters")
        return self

    def store(self) -> str | None:
        """The store URL in clear (it may hold a password), or None for model_dir."""
        return None if self.store_url is None else self.store_url.get_secret_value() or None

    def token(self) -> str | None:
        """The admin token from the file or the variable; None keeps the admin endpoints closed."""
        if self.admin_token_file is not None:
            return self.admin_token_file.read_text(encoding="utf-8").strip() or None
        if self.admin_token is None:
            return None
        return self.admin_token.get_secret_value() or None

    def cors(self) -> tuple[str, ...]:
        """The allowed origins, ("*",) for any, () when CORS is off; ValueError if malformed."""
        if not self.cors_origins or not self.cors_origins.strip():
            return ()
        origins = tuple(origin.strip() for origin in self.cors_origins.split(","))
        if "*" in origins and len(origins) > 1:
            raise ValueError("cors_origins: * stands alone, not in a list of origins")
        for origin in origins:
            if origin != "*" and not ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"cors_origins: {origin!r} is not an origin (scheme://host[:port], "
                    "no path and no trailing slash)"
                )
        return origins

    @field_validator("grpc_bind")
    @classmethod
    def _grpc_bind(cls, value: str) -> str:
        grpc_address(value)  # refuses a malformed address at start-up, naming it
        return value


def grpc_address(bind: str) -> tuple[str, int] | None:
    """(host, port) of a NEURON_GRPC_BIND, None when empty (gRPC off); ValueError if malformed.

    A fixed port: every worker binds it (SO_REUSEPORT), so port 0 would give each its own.
    """
    if not bind.strip():
        return None
    host, _, port = bind.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"grpc_bind: {bind!r} is not host:port with a port from 1 to 65535")
    return host, int(port)


def store_kind(url: str | None) -> str:
    """ "directory" or "postgresql" for a NEURON_STORE_URL; ValueError for anything else."""
    if not url:
        return "directory"
    scheme = urlsplit(url).scheme.lower() if "://" in url or url.startswith("file:") else ""
    if scheme in ("", "file"):
        return "directory"
    if scheme in POSTGRES_SCHEMES:
        return "postgresql"
    raise ValueError(f"unsupported store URL scheme {scheme!r}: use a path, file: or postgresql:")
