"""Triggers pipelines through the official Airflow client and waits for their runs.

Run by tests/deploy_docker.rs against the web server of the compose deployment:

    target/test-venv/bin/python tests/deploy/run_pipelines.py --url http://127.0.0.1:8080/api/v1 \
        --user admin --password secret [--no-wait] example_dag='{"pause_secs": 5}' sports_data_scraper

Each pipeline is unpaused, then triggered with its conf (JSON, default {}). Prints one JSON
line per run: {"dag_id", "run_id"} at trigger, then {"dag_id", "run_id", "state"} when it
ends (unless --no-wait). Exits 1 when a run does not succeed within --timeout seconds.
"""

import argparse
import json
import sys
import time
import uuid

import airflow_client.client
from airflow_client.client.api import dag_api, dag_run_api
from airflow_client.client.model.dag import DAG
from airflow_client.client.model.dag_run import DAGRun


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--no-wait", action="store_true")
    parser.add_argument("runs", nargs="+", help="dag_id or dag_id=<conf JSON>")
    args = parser.parse_args()

    config = airflow_client.client.Configuration(host=args.url, username=args.user, password=args.password)
    with airflow_client.client.ApiClient(config) as client:
        dags = dag_api.DAGApi(client)
        runs = dag_run_api.DAGRunApi(client)
        started = []
        for spec in args.runs:
            dag_id, _, conf = spec.partition("=")
            dags.patch_dag(dag_id, DAG(is_paused=False), update_mask=["is_paused"])
            run_id = f"deploy__{uuid.uuid4().hex[:12]}"
            runs.post_dag_run(dag_id, DAGRun(dag_run_id=run_id, conf=json.loads(conf or "{}")))
            print(json.dumps({"dag_id": dag_id, "run_id": run_id}), flush=True)
            started.append((dag_id, run_id))
        if args.no_wait:
            return 0
        deadline = time.monotonic() + args.timeout
        failed = False
        for dag_id, run_id in started:
            while True:
                state = str(runs.get_dag_run(dag_id, run_id).state)
                if state in ("success", "failed") or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            print(json.dumps({"dag_id": dag_id, "run_id": run_id, "state": state}), flush=True)
            failed = failed or state != "success"
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
