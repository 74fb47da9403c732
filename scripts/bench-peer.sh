#!/usr/bin/env bash
# Sluice and Apache Airflow side by side on this machine: the Airflow harness in
# ../shared/bench-peer-airflow (Airflow 2.10.5 from PyPI, LocalExecutor, a private
# PostgreSQL, out-of-the-box settings) times its shapes, then Sluice runs the same shapes
# (bench/pipelines.yaml) in standalone and distributed mode. The ratio table goes to the top
# of BENCHMARKS.md, between the `peer` markers. Takes about 15 minutes; needs root for the
# private PostgreSQL (initdb runs as `postgres`).
set -euo pipefail
cd "$(dirname "$0")/.."
peer_dir=${PEER_DIR:-../shared/bench-peer-airflow}
runs=${BENCH_RUNS:-3}
out=target/bench
mkdir -p "$out"
[ -f "$peer_dir/run.sh" ] || { echo "bench-peer: the Airflow harness is not at $peer_dir (set PEER_DIR)" >&2; exit 1; }

export BENCH_ROOT=${BENCH_ROOT:-/tmp/airflow-bench}
# SKIP_AIRFLOW=1 reuses the Airflow figures already in $BENCH_ROOT/results.
if [ "${SKIP_AIRFLOW:-0}" != 1 ]; then
  REPEATS=$runs QUIET_WAIT=${QUIET_WAIT:-120} RESULT_MD="$PWD/$out/airflow-baseline.md" \
    DAGS=sports_data_scraper,chain40,fanout100 bash "$peer_dir/run.sh"
fi

cargo bench --quiet -p sluice-bench --bench orchestrator -- --peer --runs "$runs" --out "$PWD/$out/peer-sluice.json"

python3 - "$BENCH_ROOT/results" "$out/peer-sluice.json" "$out/peer.md" "$runs" <<'PY'
import datetime, json, os, statistics, subprocess, sys
results, sluice_path, out_path, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
airflow_runs = json.load(open(f"{results}/runs-default.json"))
airflow_cli = json.load(open(f"{results}/cli.json"))
sluice = json.load(open(sluice_path))
med = statistics.median

def seconds(x):
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"

rows = []
for shape, tasks in [("sports_data_scraper", 5), ("chain40", 40), ("fanout100", 102)]:
    a = airflow_runs["dags"][shape]["summary"]["db_queued_to_end_s"]["median"]
    s, d = med(sluice["standalone"][shape]), med(sluice["distributed"][shape])
    rows.append((f"{shape} ({tasks} no-op tasks), trigger -> success", a, s, d))
for name, airflow_name in [("dags list", "airflow dags list"), ("dags test chain40", "airflow dags test chain40")]:
    a = airflow_cli["items"][airflow_name]["median"]
    s = med(sluice["cli"][name])
    rows.append((f"`{name}` (CLI, cold start)", a, s, None))

mem = airflow_runs.get("memory", {})
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
def taken(path):
    return datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
lines = [
    "## Side by side with Apache Airflow",
    "",
    f"Same machine, `cargo make bench-peer` at commit {commit}; medians of {runs} runs. Airflow's figures were taken at",
    f"{taken(f'{results}/runs-default.json')}, Sluice's at {taken(sluice_path)}. Airflow 2.10.5 runs",
    "with LocalExecutor on a private PostgreSQL at its out-of-the-box settings (harness: `../shared/bench-peer-airflow`);",
    "its figure is `dag_run.queued_at -> end_date`, Sluice's is the run's creation -> its success, both read from the",
    "metadata database. Sluice distributed: PostgreSQL through the generated PgBouncer config, Redis, 2 worker processes.",
    "",
    "| shape | Airflow | Sluice standalone | Sluice distributed | Airflow / Sluice standalone | Airflow / Sluice distributed |",
    "|---|---|---|---|---|---|",
]
for name, a, s, d in rows:
    ratio_d = f"{a / d:.0f}x" if d else "-"
    lines.append(f"| {name} | {seconds(a)} | {seconds(s)} | {seconds(d) if d else '-'} | {a / s:.0f}x | {ratio_d} |")
if mem:
    a = mem["sched_main_vmhwm_kb"] / 1024
    s, d = sluice["standalone"]["scheduler_peak_rss_mib"], sluice["distributed"]["scheduler_peak_rss_mib"]
    lines.append(f"| scheduler peak RSS (MiB) | {a:.0f} (its whole tree: {mem['tree_max_pss_sum_kb'] / 1024:.0f} PSS) "
                 f"| {s:.0f} (the whole standalone process) | {d:.0f} | {a / s:.0f}x | {a / d:.0f}x |")
open(out_path, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY

# Replace the block between the markers (or put it right under the title).
python3 - "$out/peer.md" BENCHMARKS.md <<'PY'
import sys
peer, path = open(sys.argv[1]).read(), sys.argv[2]
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmarks\n"
block = f"<!-- peer: written by cargo make bench-peer -->\n{peer}<!-- /peer -->\n"
if "<!-- peer:" in text:
    head, rest = text.split("<!-- peer:", 1)
    text = head + block + rest.split("<!-- /peer -->\n", 1)[1]
else:
    title, _, rest = text.partition("\n")
    text = f"{title}\n\n{block}{rest}"
open(path, "w").write(text)
PY
echo "BENCHMARKS.md updated"
