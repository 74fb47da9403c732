#!/usr/bin/env bash
# Benchmarks, written to BENCHMARKS.md with the machine, date and commit (the table of
# `cargo make bench-peer` at its top is kept).
# orchestration: chain40, fan-out 1,000 (and 10,000 once), transition latency, throughput
#      and footprint, standalone and distributed; a 10-minute soak at 200 tasks/s with its
#      memory, Redis stream and connection bounds, distributed (bench/benches/orchestrator).
# compile: `sluice-codegen check` on a 1,000-pipeline x 20-task file (goal < 1 s, < 200 MiB),
#      and `cargo make build` after a one-line edit of pipelines.yaml.
# CLI: `sluice dags list` and `sluice dags test example_dag` (goals < 50 ms, < 300 ms).
# web: the pipelines page with 1,000 pipelines (goal < 100 ms on the server) and `/health`
#      requests/s from a second process, wrk (goal >= 5,000/s).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${BENCH_RUNS:-3}
out=target/bench
mkdir -p "$out"
root=$(pwd)

stats() { # min / median / max of the arguments
  printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {printf "%s / %s / %s", a[1], a[int((NR+1)/2)], a[NR]}'
}

# A user crate in $1 named $2 over pipelines file $3, built in release like a deployment;
# its Rust tasks are one no-op, `crate::tasks::noop`.
user_crate() {
  local dir=$1 name=$2
  mkdir -p "$dir/src"
  cat > "$dir/Cargo.toml" <<TOML
[package]
name = "$name"
version = "0.1.0"
edition = "2024"
publish = false

[workspace]

[dependencies]
sluice-runtime = { path = "$root/runtime" }

[build-dependencies]
sluice-codegen = { path = "$root/codegen", default-features = false }

# As the workspace builds it (see vendor/README.md).
[patch.crates-io]
sqlx-core = { path = "$root/vendor/sqlx-core" }
TOML
  cp Cargo.lock "$dir/Cargo.lock"
  cp "$3" "$dir/pipelines.yaml"
  echo 'fn main() { sluice_codegen::build::compile_pipelines("pipelines.yaml"); }' > "$dir/build.rs"
  cat > "$dir/src/main.rs" <<'RS'
mod pipelines {
    #![allow(clippy::all, missing_docs, unused_imports, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/pipelines.rs"));
}
mod tasks {
    pub async fn noop<P, C, U>(
        _ctx: sluice_runtime::TaskContext<'_, P, C, U>,
    ) -> Result<(), sluice_runtime::TaskError> {
        Ok(())
    }
}
fn main() -> std::process::ExitCode {
    sluice_runtime::cli::main(&pipelines::REGISTRY)
}
RS
  cargo build --quiet --release --manifest-path "$dir/Cargo.toml" --target-dir target --offline
}

# --- orchestration -------------------------------------------------------------------
# wrk loads `/health` here and in the web section below.
command -v wrk >/dev/null 2>&1 || { sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo; $sudo apt-get install -y -qq wrk >/dev/null; }
# A 10,000-wide fan-out runs once, from its own crate: bench/pipelines.yaml's deployment with
# one pipeline added (10,000 tasks would add minutes to every test build of sluice-bench; here
# the release build takes about 3 minutes). BENCH_WIDE=0 skips it.
wide_args=()
if [ "${BENCH_WIDE:-1}" = 1 ]; then
  python3 - bench/pipelines.yaml "$out/wide.yaml" <<'PY'
import sys
text = open(sys.argv[1]).read()
head = text.split("\npipelines:\n")[0]
n = 10000
lines = [head, "pipelines:", "  - id: fanout10000", "    max_active_tasks: 64", "    tasks:",
         "      - {id: start, rust: crate::tasks::noop}"]
lines += [f"      - {{id: p{i:05d}, rust: crate::tasks::noop, depends_on: start}}" for i in range(1, n + 1)]
lines += ["      - id: end", "        rust: crate::tasks::noop",
          "        depends_on: [" + ", ".join(f"p{i:05d}" for i in range(1, n + 1)) + "]"]
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PY
  user_crate "$out/wide" sluice-wide "$out/wide.yaml"
  wide_args=(--wide-binary "$root/target/release/sluice-wide")
fi
cargo bench --quiet -p sluice-bench --bench orchestrator -- --runs "$runs" "${wide_args[@]}" --out "$root/$out/orchestrator.md"

# --- CLI -----------------------------------------------------------------------------
cargo build --quiet --release --bin sluice
cli_home="$out/cli-home"; rm -rf "$cli_home"; mkdir -p "$cli_home"
export SLUICE_HOME="$cli_home"
SLUICE_ADMIN_PASSWORD=bench-password ./target/release/sluice init > /dev/null
timed_ms() { # wall time of the command, in ms
  local start end
  start=$(date +%s%N); "$@" > /dev/null; end=$(date +%s%N)
  awk -v ns=$((end - start)) 'BEGIN {printf "%.1f", ns / 1e6}'
}
list=(); test_run=()
for _ in $(seq 10); do list+=("$(timed_ms ./target/release/sluice dags list)"); done
for _ in $(seq 10); do test_run+=("$(timed_ms ./target/release/sluice dags test example_dag)"); done
unset SLUICE_HOME
list_stats=$(stats "${list[@]}"); test_stats=$(stats "${test_run[@]}")

# --- compile -------------------------------------------------------------------------

cargo build --quiet --release -p sluice-codegen --bin sluice-codegen --example bench_yaml
./target/release/examples/bench_yaml 1000 20 > "$out/pipelines-1000x20.yaml"
size=$(wc -c < "$out/pipelines-1000x20.yaml")

times=(); rss=()
for _ in $(seq 5); do
  /usr/bin/time -f "%e %M" -o "$out/time.txt" \
    ./target/release/sluice-codegen check --file "$out/pipelines-1000x20.yaml" > /dev/null
  read -r t m < "$out/time.txt"
  times+=("$t"); rss+=("$m")
done

time_stats=$(stats "${times[@]}")
rss_stats=$(printf '%s\n' "${rss[@]}" | awk '{printf "%.1f\n", $1/1024}' | xargs bash -c 'printf "%s\n" "$@" | sort -g | awk "{a[NR]=\$1} END {printf \"%s / %s / %s\", a[1], a[int((NR+1)/2)], a[NR]}"' _)

# `cargo make build` after a one-line edit of pipelines.yaml (a pipeline's description),
# then the edit undone; each build timed.
command -v cargo-make > /dev/null || cargo install cargo-make --locked
cargo make build > /dev/null 2>&1
cp pipelines.yaml "$out/pipelines.yaml.orig"
trap 'cp "$out/pipelines.yaml.orig" pipelines.yaml' EXIT
edit=()
for i in $(seq "$runs"); do
  sed -i "s/^    description: Verify the Sluice setup.*/    description: Verify the Sluice setup (edit $i)/" pipelines.yaml
  start=$(date +%s%N); cargo make build > /dev/null 2>&1; end=$(date +%s%N)
  edit+=("$(awk -v ns=$((end - start)) 'BEGIN {printf "%.1f", ns / 1e9}')")
done
cp "$out/pipelines.yaml.orig" pipelines.yaml
cargo make build > /dev/null 2>&1
edit_stats=$(stats "${edit[@]}")

# --- web ---------------------------------------------------------------------------
# A user crate whose pipelines.yaml has 1,000 pipelines (3 shell tasks each), built in
# release like a deployment, run standalone; timed from outside.
web="$out/web"
python3 - "$out/web-pipelines.yaml" <<'PY'
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
user_crate "$web" sluice-web-bench "$out/web-pipelines.yaml"
home="$out/web-home"; rm -rf "$home"; mkdir -p "$home"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SLUICE_HOME="$home" SLUICE_WEBSERVER_PORT=$port SLUICE_ADMIN_PASSWORD=bench-password \
  SLUICE_FERNET_KEY=$(./target/release/sluice-web-bench fernet generate) \
  ./target/release/sluice-web-bench standalone > "$out/web-standalone.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; cp "$out/pipelines.yaml.orig" pipelines.yaml' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
# The sign-in form carries a token bound to a cookie: fetch both, then post.
token=$(curl -s -c "$out/cookies" "http://127.0.0.1:$port/login" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -n1)
curl -s -b "$out/cookies" -c "$out/cookies" -d "csrf=$token&username=admin&password=bench-password" \
  "http://127.0.0.1:$port/login" >/dev/null
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
# Sections measured elsewhere are kept: the side-by-side table of `cargo make bench-peer`
# (at the top) and the deployment images' sizes and build times (on a Docker engine).
kept() { # the text between `<!-- $1:` and `<!-- /$1 -->` in BENCHMARKS.md, markers included
  python3 - "$1" <<'PY'
import sys
name = sys.argv[1]
try:
    text = open("BENCHMARKS.md").read()
except FileNotFoundError:
    sys.exit()
start, end = f"<!-- {name}:", f"<!-- /{name} -->"
if start in text:
    print(start + text.split(start, 1)[1].split(end, 1)[0] + end)
PY
}
peer=$(kept peer)
deploy=$(kept deploy)
cat > BENCHMARKS.md <<MD
# Benchmarks

Machine: $(nproc) cores, ${cpu}, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -sr).
Date: $(date -u +%Y-%m-%d). Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown).
Reproduce with \`cargo make bench\` (about 37 minutes) and \`cargo make bench-peer\` (the
comparison with Airflow, about 15 minutes). Release builds; figures with three numbers are
min / median / max over ${runs} runs unless a table says otherwise.

${peer}

## Orchestration

Pipelines from \`bench/pipelines.yaml\`, compiled into \`sluice-bench\` the way a user's
pipelines are; every task is the same Rust no-op. Runs are triggered with the CLI and timed
from the metadata database: the run's creation -> its success. Standalone is one
\`sluice standalone\` process on SQLite; distributed is the services of
\`generated/docker-compose.yml\` as local processes (scheduler, web server, N workers) on
PostgreSQL through the generated PgBouncer config and the generated Redis.

$(cat "$out/orchestrator.md")

${deploy}

## Compile

### \`sluice-codegen check\` on 1,000 pipelines x 20 tasks

The file (${size} bytes) comes from \`cargo run --release -p sluice-codegen --example bench_yaml -- 1000 20\`:
every pipeline has a cron schedule in a named timezone, a typed param, default args, a
fan-out and a join, templates, connections, a pool and a queue, so every check runs.

| measure | min / median / max (5 runs) | goal |
|---|---|---|
| wall time (s) | ${time_stats} | < 1 |
| peak RSS (MiB) | ${rss_stats} | < 200 |

### \`cargo make build\` after a one-line edit

One pipeline's description in \`pipelines.yaml\` changed, then \`cargo make build\`
(check, regenerate \`generated/\`, debug build of \`sluice\`): ${edit_stats} s.

## CLI

Release \`sluice\` on a fresh \`sluice init\` home (SQLite), 10 runs each.

| command | min / median / max (ms) | goal |
|---|---|---|
| \`sluice dags list\` | ${list_stats} | < 50 |
| \`sluice dags test example_dag\` (a Rust task, then a shell task) | ${test_stats} | < 300 |

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
if [ -f bench/ANALYSIS.md ]; then cat bench/ANALYSIS.md >> BENCHMARKS.md; fi
cat BENCHMARKS.md
