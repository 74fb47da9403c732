#!/usr/bin/env bash
# Benchmarks, written to BENCHMARKS.md with the machine, date and commit.
# compile: `sluice-codegen check` on a 1,000-pipeline x 20-task file (goal < 1 s, < 200 MiB).
# web: the pipelines page with 1,000 pipelines (goal < 100 ms on the server) and `/health`
#      requests/s from a second process, wrk (goal >= 5,000/s).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${BENCH_RUNS:-5}
out=target/bench
mkdir -p "$out"

cargo build --quiet --release -p sluice-codegen --bin sluice-codegen --example bench_yaml
./target/release/examples/bench_yaml 1000 20 > "$out/pipelines-1000x20.yaml"
size=$(wc -c < "$out/pipelines-1000x20.yaml")

times=(); rss=()
for _ in $(seq "$runs"); do
  /usr/bin/time -f "%e %M" -o "$out/time.txt" \
    ./target/release/sluice-codegen check --file "$out/pipelines-1000x20.yaml" > /dev/null
  read -r t m < "$out/time.txt"
  times+=("$t"); rss+=("$m")
done

stats() { # min / median / max of the arguments
  printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {printf "%s / %s / %s", a[1], a[int((NR+1)/2)], a[NR]}'
}
time_stats=$(stats "${times[@]}")
rss_stats=$(printf '%s\n' "${rss[@]}" | awk '{printf "%.1f\n", $1/1024}' | xargs bash -c 'printf "%s\n" "$@" | sort -g | awk "{a[NR]=\$1} END {printf \"%s / %s / %s\", a[1], a[int((NR+1)/2)], a[NR]}"' _)

# --- web ---------------------------------------------------------------------------
# A user crate whose pipelines.yaml has 1,000 pipelines (3 shell tasks each), built in
# release like a deployment, run standalone; timed from outside.
web="$out/web"
mkdir -p "$web/src"
root=$(pwd)
cat > "$web/Cargo.toml" <<TOML
[package]
name = "sluice-web-bench"
version = "0.1.0"
edition = "2024"
publish = false

[workspace]

[dependencies]
sluice-runtime = { path = "$root/runtime" }

[build-dependencies]
sluice-codegen = { path = "$root/codegen" }
TOML
cp Cargo.lock "$web/Cargo.lock"
echo 'fn main() { sluice_codegen::build::compile_pipelines("pipelines.yaml"); }' > "$web/build.rs"
cat > "$web/src/main.rs" <<'RS'
mod pipelines {
    #![allow(clippy::all, missing_docs, unused_imports, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/pipelines.rs"));
}
fn main() -> std::process::ExitCode {
    sluice_runtime::cli::main(&pipelines::REGISTRY)
}
RS
python3 - "$web/pipelines.yaml" <<'PY'
import sys
lines = ["deployment:", "  project: webbench", "  image: sluice/webbench", "  executor:", "    queues: [default]",
         "  admin: {username_env: SLUICE_ADMIN_USERNAME, password_env: SLUICE_ADMIN_PASSWORD, email_env: SLUICE_ADMIN_EMAIL}",
         "  fernet_key_env: SLUICE_FERNET_KEY", "  secret_key_env: SLUICE_SECRET_KEY",
         "  metadata_db: {name: sluice, user: sluice, password: \"${POSTGRES_PASSWORD}\"}", "pipelines:"]
for i in range(1000):
    lines += [f"  - id: pipeline_{i:04d}", f"    description: Pipeline number {i}", "    owner: bench",
              f"    tags: [team_{i % 10}]", f"    schedule: \"{i % 60} {i % 24} * * *\"", "    start_date: 2024-01-01",
              "    tasks:", "      - {id: extract, shell: \"true\"}",
              "      - {id: transform, shell: \"true\", depends_on: extract}",
              "      - {id: load, shell: \"true\", depends_on: transform}"]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
cargo build --quiet --release --manifest-path "$web/Cargo.toml" --target-dir target --offline
command -v wrk >/dev/null 2>&1 || { sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo; $sudo apt-get install -y -qq wrk >/dev/null; }
home="$out/web-home"; rm -rf "$home"; mkdir -p "$home"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SLUICE_HOME="$home" SLUICE_WEBSERVER_PORT=$port SLUICE_ADMIN_PASSWORD=bench-password \
  SLUICE_FERNET_KEY=$(./target/release/sluice-web-bench fernet generate) \
  ./target/release/sluice-web-bench standalone > "$out/web-standalone.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
curl -s -c "$out/cookies" -d 'username=admin&password=bench-password' "http://127.0.0.1:$port/login" >/dev/null
page=(); for _ in $(seq 20); do
  page+=("$(curl -s -b "$out/cookies" -o "$out/page.html" -w '%{time_starttransfer}' "http://127.0.0.1:$port/")")
done
rows=$(grep -c '<tr data-dag-id=' "$out/page.html")
page_ms=$(printf '%s\n' "${page[@]}" | awk '{printf "%.1f\n", $1*1000}' | sort -g | awk '{a[NR]=$1} END {printf "%s / %s / %s", a[1], a[int((NR+1)/2)], a[NR]}')
rps=()
for _ in $(seq 3); do
  rps+=("$(wrk -t2 -c64 -d5s "http://127.0.0.1:$port/health" | awk '/Requests\/sec/ {print $2}')")
done
rps_stats=$(stats "${rps[@]}")
kill $server 2>/dev/null || true

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
cat > BENCHMARKS.md <<MD
# Benchmarks

Machine: $(nproc) cores, ${cpu}, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -sr).
Date: $(date -u +%Y-%m-%d). Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown).
Reproduce with \`cargo make bench\`. Figures are min / median / max over ${runs} runs.

## Compile: \`sluice-codegen check\` on 1,000 pipelines x 20 tasks

The file (${size} bytes) comes from \`cargo run --release -p sluice-codegen --example bench_yaml -- 1000 20\`:
every pipeline has a cron schedule in a named timezone, a typed param, default args, a
fan-out and a join, templates, connections, a pool and a queue, so every check runs.

| measure | min / median / max | goal |
|---|---|---|
| wall time (s) | ${time_stats} | < 1 |
| peak RSS (MiB) | ${rss_stats} | < 200 |

## Web: the pipelines page with 1,000 pipelines, and \`/health\`

A release build of a user crate with 1,000 pipelines (3 tasks each) runs \`sluice
standalone\` (SQLite). The page is fetched 20 times with curl as a signed-in user (time to
first byte: the server's render, on loopback; it listed ${rows} pipelines). \`/health\` is
loaded by wrk from a second process (2 threads, 64 connections, 5 s, 3 runs); the web
server reads the database for it at most every 250 ms.

| measure | min / median / max | goal |
|---|---|---|
| pipelines page, 1,000 pipelines (ms) | ${page_ms} | < 100 |
| \`/health\` (requests/s) | ${rps_stats} | >= 5,000 |
MD
cat BENCHMARKS.md
