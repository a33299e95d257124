#!/usr/bin/env bash
# `make pytest`: install what the PostgreSQL-store and replica tests need from Debian, if missing:
# the PostgreSQL server (tests/pg.py runs initdb/pg_ctl in a temp dir) and haproxy (the load
# balancer in front of several instances). Services are not started (temporary policy-rc.d).
# Not root: say what is missing; the tests then skip (or fail under CI=true).
set -euo pipefail

have_postgres() {
    { command -v initdb && command -v pg_ctl; } >/dev/null 2>&1 ||
        compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

missing=()
have_postgres || missing+=(postgresql)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "test-packages: not root: cannot install ${missing[*]}; their tests will skip" >&2
    exit 0
fi
echo "test-packages: installing ${missing[*]} from Debian (services not started)"
policy_created=false
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_created=true
fi
rc=0
{
    apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
} || rc=$?
if $policy_created; then rm -f /usr/sbin/policy-rc.d; fi
exit $rc
