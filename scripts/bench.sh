#!/usr/bin/env bash
# Benchmarks, written to BENCHMARKS.md with the machine, date and commit.
# compile: `sluice-codegen check` on a 1,000-pipeline x 20-task file (goal < 1 s, < 200 MiB).
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
MD
cat BENCHMARKS.md
