#!/usr/bin/env bash
# Type-checks the Python tasks against their generated contexts with mypy --strict: a wrong
# output name or type, an undeclared connection or param, fails here, before deploy.
# Does nothing when pipelines.yaml has no Python task. mypy comes from the test venv
# (target/test-venv, under CARGO_TARGET_DIR when set), made by scripts/install-test-deps.sh when missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
context="generated/python/sluice_context.py"
if [[ ! -f "$context" ]]; then
    exit 0
fi
target="${CARGO_TARGET_DIR:-$root/target}"
mypy="$target/test-venv/bin/mypy"
if [[ ! -x "$mypy" ]]; then
    echo "check-python: mypy is not in target/test-venv: installing the test tools" >&2
    bash scripts/install-test-deps.sh
fi
# The modules the lock file names (each Python task's `module`).
mapfile -t modules < <(python3 - <<'PY'
import json
lock = json.load(open("generated/pipelines.lock.json", encoding="utf-8"))
found = sorted({t["module"] for p in lock["pipelines"] for t in p["tasks"] if t.get("kind") == "python"})
print("\n".join(found))
PY
)
MYPYPATH="generated/python" "$mypy" --strict --cache-dir "$target/mypy-cache" "$context" "${modules[@]}"
