"""Runs schemathesis over every operation of Airflow 2.10's own OpenAPI document
(airflow-openapi-v1.yaml beside this file) against a running Sluice, with the phases
examples, coverage and fuzzing and the checks not_a_server_error,
response_schema_conformance and status_code_conformance.

Every failing check is then sorted. It is accepted only where Airflow 2.10 answers the
same way (AIRFLOW_SAME below, each with Airflow's behaviour); any other failure, an
operation left untested, or an error of the run fails this script. It prints one line per
accepted kind with a count and an example, and ends with `ok   all checks passed`.

Usage: check.py --url http://127.0.0.1:8080/api/v1 --user admin --password PW
"""

import argparse
import base64
import json
import pathlib
import re
import subprocess
import sys
import urllib.request
from urllib.parse import parse_qs, urlsplit

HERE = pathlib.Path(__file__).resolve().parent
SPEC = HERE / "airflow-openapi-v1.yaml"
CONFIG = HERE / "schemathesis.toml"
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"
# The user the config pins every `{username}` to, so that the fuzzer's PATCH and DELETE of
# users land on it and never on the account the run signs in with.
FUZZ_TARGET = "fuzz_target"
OPERATIONS = 89


def problem(response):
    """The response's RFC 7807 problem document, or None."""
    try:
        body = json.loads(response["body"])
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("status") == response["status"] and "detail" in body:
        return body
    return None


def outside_the_schema(case, response):
    """A request schemathesis made outside the document's schema on purpose (a negative
    case: a wrong type, a negative offset, a required parameter or body left out, an
    unknown property) answered with a 400 problem. Airflow validates every request against
    this document (connexion) and answers such a request with 400 Bad Request, a status the
    document does not list for most operations."""
    return case["mode"] == "negative" and response["status"] == 400 and problem(response) is not None


def unchangeable_field(case, response):
    """An `update_mask` naming a field that cannot be changed (PATCH /dags,
    PATCH /dags/{dag_id}, PATCH /users/{username}) answered 400. Airflow answers the same
    ("Only `is_paused` field can be updated through the REST API", or "... is not an
    updatable field"), and the document lists no 400 for PATCH /dags."""
    mask = case["query"].get("update_mask")
    return response["status"] == 400 and mask not in (None, "", []) and problem(response) is not None


def negative_limit(case, response):
    """A negative `limit` (which the document allows: it gives no minimum) answered 400.
    Airflow's `check_limit` answers 400 too: "Page limit must be a positive integer"."""
    limit = case["query"].get("limit", "")
    return response["status"] == 400 and limit.startswith("-") and problem(response) is not None


# Fields Airflow's own request schemas require though the document does not mark them
# required: (operation, field). Airflow answers their absence with 400 (marshmallow).
REQUIRED_BY_AIRFLOW = [
    ("POST /dags/{dag_id}/updateTaskInstancesState", "new_state"),
    ("PATCH /dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", "new_state"),
    ("PATCH /dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}", "new_state"),
]


def field_airflow_requires(case, response):
    """A body without a field Airflow's request schema requires (`new_state` of a state
    change) answered 400, as Airflow's schema validation answers it."""
    body = problem(response)
    return (
        response["status"] == 400
        and body is not None
        and any(
            case["operation"] == operation and f"give `{field}`" in body["detail"]
            for operation, field in REQUIRED_BY_AIRFLOW
        )
    )


def no_json_body(case, response):
    """An operation that reads a JSON body called without one (no body, or another content
    type) answered 400. Airflow reads it with Flask's `request.get_json()`, which answers
    400 Bad Request too; the document lists no 400 for several of these operations."""
    body = problem(response)
    return (
        response["status"] == 400
        and body is not None
        and body["detail"].startswith("invalid request body: Expected request with `Content-Type: application/json`")
    )


def already_exists(case, response):
    """A POST creating a pool, connection, variable or user whose name is taken answered
    409. Airflow answers 409 ("... already exists") too; its document lists no 409 for
    these operations."""
    creates = case["method"] == "POST" and case["path"] in ("/pools", "/connections", "/variables", "/users")
    body = problem(response)
    return creates and response["status"] == 409 and body is not None and "exist" in body["detail"]


AIRFLOW_SAME = [
    ("a request outside the schema: 400", outside_the_schema),
    ("update_mask naming a field that cannot change: 400", unchangeable_field),
    ("a negative limit: 400", negative_limit),
    ("a body without a field Airflow's schema requires: 400", field_airflow_requires),
    ("no JSON body where one is read: 400", no_json_body),
    ("creating what exists: 409", already_exists),
]


def request_json(url, user, password, method, body):
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status


def scenarios(ndjson):
    """(case, response, failed check) for every failing check of the run, and the labels
    of the operations tested."""
    failures, labels = [], set()
    for line in ndjson.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished.get("recorder") or {}
        if recorder.get("label"):
            labels.add(recorder["label"])
        for case_id, checks in (recorder.get("checks") or {}).items():
            for check in checks:
                if check["status"] == "success":
                    continue
                value = recorder["cases"][case_id]["value"]
                interaction = (recorder.get("interactions") or {}).get(case_id) or {}
                answer = interaction.get("response") or {}
                content = answer.get("content") or {}
                body = base64.b64decode(content["$base64"]).decode("utf-8", "replace") if "$base64" in content else ""
                uri = (interaction.get("request") or {}).get("uri", "")
                case = {
                    "operation": recorder.get("label", ""),
                    "method": value["method"],
                    "path": value["path"],
                    "query": {k: v[-1] for k, v in parse_qs(urlsplit(uri).query, keep_blank_values=True).items()},
                    "mode": value.get("meta", {}).get("generation", {}).get("mode"),
                    "uri": uri,
                }
                response = {"status": answer.get("status_code"), "body": body}
                failures.append((case, response, check))
    return failures, labels


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--report-dir", required=True)
    parser.add_argument("--max-examples", default="20")
    args = parser.parse_args()

    status = request_json(
        f"{args.url}/users",
        args.user,
        args.password,
        "POST",
        {
            "username": FUZZ_TARGET,
            "email": "fuzz@example.com",
            "first_name": "Fuzz",
            "last_name": "Target",
            "roles": [{"name": "Viewer"}],
            "password": "fuzz-target-password-1",
        },
    )
    print(f"ok   created user {FUZZ_TARGET} ({status})")

    report = pathlib.Path(args.report_dir) / "schemathesis.ndjson"
    schemathesis = pathlib.Path(sys.executable).with_name("schemathesis")
    command = [
        str(schemathesis),
        "--config-file", str(CONFIG),
        "run", str(SPEC),
        "--url", args.url,
        "--auth", f"{args.user}:{args.password}",
        "--phases", "examples,coverage,fuzzing",
        "--checks", CHECKS,
        "--max-examples", args.max_examples,
        "--seed", "20261203",
        "--no-color",
        "--report", "ndjson",
        "--report-ndjson-path", str(report),
    ]
    # In the report folder: schemathesis keeps a cache of past failures under its working
    # folder (`.schemathesis/`), which a run would replay; each run starts from none.
    run = subprocess.run(command, capture_output=True, text=True, check=False, cwd=args.report_dir)
    summary = run.stdout[run.stdout.find("SUMMARY") - 34:] if "SUMMARY" in run.stdout else run.stdout[-3000:]
    print(summary)
    if not report.exists():
        print(f"FAIL schemathesis wrote no report (exit {run.returncode}):\n{run.stderr[-3000:]}")
        return 1

    failures, labels = scenarios(report)
    if len(labels) != OPERATIONS:
        print(f"FAIL {len(labels)} operations were tested, not {OPERATIONS}")
        return 1
    accepted = {name: [] for name, _ in AIRFLOW_SAME}
    unexpected = []
    for case, response, check in failures:
        rule = next((name for name, same in AIRFLOW_SAME if same(case, response)), None)
        if rule is None:
            unexpected.append((case, response, check))
        else:
            accepted[rule].append((case, response, check))
    for name, cases in accepted.items():
        if cases:
            case, response, check = cases[0]
            message = check["failure_info"]["failure"]["message"].replace("\n", "; ")
            print(f"same as Airflow: {len(cases)} x {name}; e.g. {case['method']} {case['uri']}: {message}")
    for case, response, check in unexpected:
        failure = check["failure_info"]["failure"]
        print(
            f"FAIL {check['name']} ({case['mode']} case) {case['method']} {case['uri']}\n"
            f"     {failure['title']}: {failure['message']}\n     answer {response['status']}: {response['body'][:400]}"
        )
    last = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    if re.search(r"\d+ errors?\b", last):
        print(f"FAIL schemathesis reported errors: {last}")
        return 1
    if unexpected:
        return 1
    print(f"ok   {OPERATIONS} operations, {len(failures)} failing checks, each as Airflow 2.10 answers")
    print("ok   all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
