#!/usr/bin/env bash
# Local stand-ins for the public images the generated deployment uses, for machines that
# reach Debian's package mirror but no image registry. A normal machine pulls the real
# ones and never needs this script.
#
#   debian:bookworm-slim  debootstrap --variant=minbase of Debian bookworm, imported
#   postgres:15           Debian's PostgreSQL 15, behind an entrypoint that honours the
#                         official image's POSTGRES_DB / POSTGRES_USER / POSTGRES_PASSWORD,
#                         PGDATA and /docker-entrypoint-initdb.d
#   redis:7               Debian's redis-server 7, WORKDIR /data, as the official image
#   rust:1.95-bookworm    gcc, libc6-dev and this machine's Rust toolchain (no toolchain can
#                         be downloaded here), CARGO_HOME=/usr/local/cargo as the official image
#
# Every stand-in carries this machine's extra CA certificates (/usr/local/share/ca-certificates):
# the network's egress presents certificates from a CA that a fresh image does not trust,
# and cargo inside the builder must reach crates.io.
#
# Idempotent: an image that exists already is kept (`--force` makes them all again).
# Uses Debian's docker client (/usr/bin/docker; SLUICE_DOCKER overrides), which builds with
# BuildKit without the buildx plugin.
set -euo pipefail

docker=${SLUICE_DOCKER:-/usr/bin/docker}
force=0
[ "${1:-}" = "--force" ] && force=1
say() { printf 'base-images: %s\n' "$*"; }

mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
mirror=${mirror:-http://deb.debian.org/debian}
work=$(mktemp -d /tmp/sluice-base-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

have_image() { [ "$force" -eq 0 ] && "$docker" image inspect "$1" >/dev/null 2>&1; }

extra_cas() { # copies this machine's extra CA certificates into $1
    mkdir -p "$1"
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$1"/
    fi
}

# --- debian:bookworm-slim ---------------------------------------------------------------------
if have_image debian:bookworm-slim; then
    say "debian:bookworm-slim present"
else
    command -v debootstrap >/dev/null || { say "debootstrap missing: apt-get install debootstrap" >&2; exit 1; }
    say "debootstrap --variant=minbase bookworm from $mirror"
    root="$work/rootfs"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
    # The extra CAs wait in the folder update-ca-certificates reads: any image that installs
    # ca-certificates (the generated Dockerfile does) then trusts them too.
    extra_cas "$root/usr/local/share/ca-certificates"
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
    tar -C "$root" -c . | "$docker" import --change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
    say "debian:bookworm-slim imported"
fi

build() { # build <tag> <context dir>: a Dockerfile already in the context
    say "building $1"
    DOCKER_BUILDKIT=1 "$docker" build --quiet -t "$1" "$2" >/dev/null
    say "$1 built"
}

# --- postgres:15 -------------------------------------------------------------------------------
if have_image postgres:15; then
    say "postgres:15 present"
else
    ctx="$work/postgres"
    mkdir -p "$ctx"
    cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM debian:bookworm-slim
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
 && install -d -o postgres -g postgres -m 2775 /var/run/postgresql \
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
 && mkdir -p /docker-entrypoint-initdb.d
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
DOCKERFILE
    cat >"$ctx/entrypoint.sh" <<'ENTRYPOINT'
#!/bin/sh
# The official image's contract, as far as the generated deployment relies on it: an empty
# PGDATA is initialized with POSTGRES_USER (superuser) / POSTGRES_PASSWORD and POSTGRES_DB,
# the scripts in /docker-entrypoint-initdb.d run once, then the server runs as `postgres`
# in the foreground (PID 1 via exec), listening on every address with scram-sha-256.
set -eu
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ "$1" = postgres ]; then
    shift
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
        chown postgres "$pwfile"
        as_postgres initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null
        rm -f "$pwfile"
        printf "host all all all scram-sha-256\n" >>"$PGDATA/pg_hba.conf"
        as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        if [ "$POSTGRES_DB" != postgres ]; then
            as_postgres psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres \
                -c "CREATE DATABASE \"$POSTGRES_DB\""
        fi
        for f in /docker-entrypoint-initdb.d/*; do
            case "$f" in
                *.sql) as_postgres psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f "$f" ;;
                *.sh) . "$f" ;;
            esac
        done
        as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
ENTRYPOINT
    chmod +x "$ctx/entrypoint.sh"
    build postgres:15 "$ctx"
fi

# --- redis:7 -----------------------------------------------------------------------------------
if have_image redis:7; then
    say "redis:7 present"
else
    ctx="$work/redis"
    mkdir -p "$ctx"
    cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM debian:bookworm-slim
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends redis-server redis-tools \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
 && install -d -o redis -g redis /data
WORKDIR /data
VOLUME /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no"]
DOCKERFILE
    build redis:7 "$ctx"
fi

# --- rust:1.95-bookworm ------------------------------------------------------------------------
if have_image rust:1.95-bookworm; then
    say "rust:1.95-bookworm present"
else
    toolchain=$(rustc --print sysroot)
    version=$(rustc --version | cut -d ' ' -f 2)
    case "$version" in
        1.95.*) ;;
        *) say "this machine's rustc is $version; rust:1.95-bookworm needs 1.95" >&2; exit 1 ;;
    esac
    ctx="$work/rust"
    mkdir -p "$ctx/toolchain"
    # The compiler and standard library only: the documentation (share/) is not needed.
    cp -a "$toolchain/bin" "$toolchain/lib" "$ctx/toolchain/"
    [ -d "$toolchain/libexec" ] && cp -a "$toolchain/libexec" "$ctx/toolchain/"
    extra_cas "$ctx/cas"
    cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM debian:bookworm-slim
COPY cas/ /usr/local/share/ca-certificates/
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY toolchain/ /usr/local/rust/
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/rust/bin:$PATH
RUN mkdir -p /usr/local/cargo/bin && cargo --version && rustc --version
DOCKERFILE
    build rust:1.95-bookworm "$ctx"
fi

"$docker" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
    | grep -E '^(debian:bookworm-slim|postgres:15|redis:7|rust:1.95-bookworm) ' \
    | sed 's/^/base-images: /'
