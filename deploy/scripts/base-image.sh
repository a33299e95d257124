#!/usr/bin/env bash
# Build (or reuse) the local base image localhost/python-base:bookworm in the engine at DOCKER_HOST.
#
# No container registry is reachable in CI, so the base image is made here: a debootstrap'ed
# Debian bookworm (minbase) with python3 + venv, laid out like the official python image
# (python and pip in /usr/local/bin). HTTPS from build steps goes through an intercepting proxy,
# so the host's CA bundle goes in and pip is pointed at it; any http(s) index of the host's pip
# config is carried over. The Debian mirror is read from this machine's apt sources.
#
# The root filesystem tarball is cached in $NEURON_CACHE_DIR (default /var/cache/neuron-service),
# keyed by this script, the CA bundle and the pip config, so a second run only imports it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tag=${BASE_IMAGE:-localhost/python-base:bookworm}
cache=${NEURON_CACHE_DIR:-/var/cache/neuron-service}
ca_bundle=${NEURON_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
suite=bookworm
log() { printf 'base-image: %s\n' "$*" >&2; }

# pip settings for the image: the CA bundle, plus the host's http(s) indexes (file:// ones are
# paths on this machine, useless inside a container).
pip_conf=$(
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n'
    pip config list 2>/dev/null | python3 -c '
import sys
for line in sys.stdin:
    key, _, value = line.strip().partition("=")
    name = key.split(".")[-1]
    urls = [u for u in value.strip("\x27\"").split() if u.startswith(("http://", "https://"))]
    if name in ("index-url", "extra-index-url") and urls and not key.startswith(":env:"):
        print(f"{name} = {chr(32).join(urls)}")
' | sort -u
)
key=$( { cat "$0"; cat "$ca_bundle"; printf '%s' "$pip_conf"; } | sha256sum | cut -c1-16)

if [ "$(docker image inspect -f '{{ index .Config.Labels "org.neuron-service.base-key" }}' "$tag" 2>/dev/null)" = "$key" ]; then
    log "$tag is up to date ($key)"
    exit 0
fi

mkdir -p "$cache"
tarball=$cache/python-base-$suite-$key.tar
if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { log "debootstrap is not installed"; exit 1; }
    mirror=$(python3 "$here/debian_mirror.py" "$suite")
    root=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$root" "$tarball.tmp"' EXIT
    log "debootstrap $suite from the machine's apt mirror into $root"
    start=$SECONDS
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$suite" "$root" "$mirror" >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; exit 1; }
    rm -f "$root.log"
    cp "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
    printf '%s\n' "$pip_conf" >"$root/etc/pip.conf"
    # A venv over /usr/local puts python, pip and installed scripts in /usr/local/bin, as in
    # the official image, and keeps Debian's own python packages out of pip's way.
    chroot "$root" /usr/bin/python3 -m venv /usr/local
    chroot "$root" /usr/local/bin/python -m pip --version >/dev/null
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
    trap - EXIT
    # Older keys are stale rootfs tarballs of this same image.
    find "$cache" -maxdepth 1 -name "python-base-$suite-*.tar" ! -name "${tarball##*/}" -delete
    log "rootfs built in $((SECONDS - start)) s: $tarball"
fi

log "docker import $tarball as $tag"
docker import \
    --change "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" \
    --change "LABEL org.neuron-service.base-key=$key" \
    --change 'CMD ["python3"]' \
    - "$tag" <"$tarball" >/dev/null
