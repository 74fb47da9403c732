#!/usr/bin/env bash
# Makes sure a Docker engine answers, for `cargo make test-deploy`: installs Debian's
# docker.io (engine and client) and debootstrap (for scripts/base-images.sh) when missing,
# and starts dockerd when none answers. Idempotent.
#
# dockerd runs with the vfs storage driver, which works inside any container or VM (no
# overlay filesystem needed), at the cost of disk space: every layer is a full copy.
set -euo pipefail
say() { printf 'docker-engine: %s\n' "$*"; }
docker=${SLUICE_DOCKER:-/usr/bin/docker}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        say "need root for: $*" >&2
        return 1
    fi
}

missing=()
[ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if "$docker" info >/dev/null 2>&1; then
    say "an engine answers ($("$docker" info --format '{{.ServerVersion}}, storage {{.Driver}}'))"
    exit 0
fi
log=${TMPDIR:-/tmp}/sluice-dockerd.log
say "starting dockerd --storage-driver=vfs (log: $log)"
as_root sh -c "nohup /usr/sbin/dockerd --storage-driver=vfs >'$log' 2>&1 &"
for _ in $(seq 1 60); do
    if "$docker" info >/dev/null 2>&1; then
        say "dockerd answers ($("$docker" info --format '{{.ServerVersion}}'))"
        exit 0
    fi
    sleep 1
done
say "dockerd did not answer within 60 s:" >&2
tail -n 20 "$log" >&2
exit 1
