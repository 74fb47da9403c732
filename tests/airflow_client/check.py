"""Sluice's REST API through the official Airflow Python client (apache-airflow-client 2.10.0).

Uses the client the way an Airflow user does: a Configuration with basic auth, an ApiClient,
the generated *Api classes and models. The client checks every response against its models,
so a field of the wrong type or a null where Airflow never sends one fails here too.

Prints one line per step; stops at the first failure with a message naming the step and
exits 1 (2 for usage errors). Run by tests/airflow_client.rs against `sluice standalone`:

    target/test-venv/bin/python tests/airflow_client/check.py \
        --url http://127.0.0.1:8080/api/v1 --user admin --password secret
"""

import argparse
import datetime
import importlib.metadata
import sys
import time
import traceback
import uuid

try:
    import urllib3
    import airflow_client.client
    from airflow_client.client.api import (
        config_api,
        connection_api,
        dag_api,
        dag_run_api,
        dag_stats_api,
        dag_warning_api,
        event_log_api,
        monitoring_api,
        role_api,
        task_instance_api,
        user_api,
        variable_api,
        x_com_api,
    )
    from airflow_client.client.exceptions import ApiException, OpenApiException
    from airflow_client.client.model.connection import Connection
    from airflow_client.client.model.dag import DAG
    from airflow_client.client.model.clear_dag_run import ClearDagRun
    from airflow_client.client.model.clear_task_instances import ClearTaskInstances
    from airflow_client.client.model.list_dag_runs_form import ListDagRunsForm
    from airflow_client.client.model.list_task_instance_form import ListTaskInstanceForm
    from airflow_client.client.model.set_dag_run_note import SetDagRunNote
    from airflow_client.client.model.set_task_instance_note import SetTaskInstanceNote
    from airflow_client.client.model.update_task_instances_state import UpdateTaskInstancesState
    from airflow_client.client.model.dag_run import DAGRun
    from airflow_client.client.model.task_state import TaskState
    from airflow_client.client.model.update_task_instance import UpdateTaskInstance
    from airflow_client.client.model.update_task_state import UpdateTaskState
    from airflow_client.client.model.variable import Variable
except ImportError as error:
    print(f"FAIL import: {error}; run scripts/install-test-deps.sh", flush=True)
    sys.exit(1)

CLIENT = "apache-airflow-client"
PIPELINES = ("example_dag", "sports_data_scraper", "ml_model_training")
DAG_ID = "example_dag"
GREETING = "Hello from the client"
RUN_TIMEOUT_S = 60.0
POLL_S = 0.5


class Failure(Exception):
    """A check that did not hold: the message says what was expected and what came back."""


def expect(condition, message):
    if not condition:
        raise Failure(message)


def state_of(model):
    """The string of an enum model (DagState, TaskState, HealthStatus); None when absent."""
    return None if model is None else model.value


def component_status(health, name):
    """`health.<name>.status` as a string; None when the server left it out."""
    component = health.get(name)
    return None if component is None else state_of(component.get("status"))


def expect_status(status, call):
    """Runs `call`, which must fail with HTTP `status`."""
    try:
        call()
    except ApiException as error:
        expect(error.status == status, f"expected HTTP {status}, got {describe_api_error(error)}")
        return
    raise Failure(f"expected HTTP {status}, but the call succeeded")


def describe_api_error(error):
    body = (error.body or "").strip()
    if len(body) > 300:
        body = body[:300] + "..."
    return f"HTTP {error.status} {error.reason}: {body or '(no body)'}"


def call_site(error):
    """The line of this script whose client call raised `error`, to tell the calls of a step apart."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename == __file__]
    return f" [at line {frames[-1].lineno}: {frames[-1].line}]" if frames else ""


# --- the steps, in order; each returns the detail of its `ok` line ------------------------------


def check_health(api):
    health = monitoring_api.MonitoringApi(api).get_health()
    database = component_status(health, "metadatabase")
    expect(database == "healthy", f"metadatabase status is {database!r}, not 'healthy': {health}")
    return f"metadatabase {database}, scheduler {component_status(health, 'scheduler')}"


def check_list_dags(api):
    dags = dag_api.DAGApi(api).get_dags()
    ids = sorted(dag.dag_id for dag in dags.dags)
    missing = [p for p in PIPELINES if p not in ids]
    expect(not missing, f"missing {missing} in {ids}")
    return f"{dags.total_entries} DAG(s): {', '.join(ids)}"


def check_get_dag(api):
    dag = dag_api.DAGApi(api).get_dag(DAG_ID)
    expect(dag.dag_id == DAG_ID, f"asked for {DAG_ID}, got {dag.dag_id}")
    return f"{dag.dag_id}: is_paused={dag.is_paused}, owners={dag.owners}"


def check_tasks(api):
    # The client validates every enum: a trigger rule must be Airflow's string.
    tasks = dag_api.DAGApi(api).get_tasks(DAG_ID)
    rules = {task.task_id: str(getattr(task.trigger_rule, "value", task.trigger_rule)) for task in tasks.tasks}
    expect(rules and all(rule == "all_success" for rule in rules.values()), f"trigger rules: {rules}")
    return ", ".join(f"{task} {rule}" for task, rule in sorted(rules.items()))


def check_unpause(api):
    dags = dag_api.DAGApi(api)
    patched = dags.patch_dag(DAG_ID, DAG(is_paused=False), update_mask=["is_paused"])
    expect(patched.is_paused is False, f"patch_dag answered is_paused={patched.is_paused}")
    again = dags.get_dag(DAG_ID)
    expect(again.is_paused is False, f"get_dag after the patch: is_paused={again.is_paused}")
    return f"{DAG_ID} unpaused (patch_dag, read back with get_dag)"


def check_trigger(api, state):
    run = dag_run_api.DAGRunApi(api).post_dag_run(DAG_ID, DAGRun(conf={"greeting": GREETING}))
    expect(run.dag_id == DAG_ID, f"the new run belongs to {run.dag_id}")
    expect(run.dag_run_id, "the new run has no dag_run_id")
    expect(run.conf == {"greeting": GREETING}, f"conf came back as {run.conf}")
    state["run"] = run
    return f"{run.dag_run_id} ({state_of(run.state)}, logical_date {run.logical_date})"


def check_run_succeeds(api, state):
    runs = dag_run_api.DAGRunApi(api)
    run_id = state["run"].dag_run_id
    started = time.monotonic()
    seen = []
    while True:
        run = runs.get_dag_run(DAG_ID, run_id)
        current = state_of(run.state)
        if not seen or seen[-1] != current:
            seen.append(current)
        if current == "success":
            break
        expect(current != "failed", f"{run_id} failed ({' -> '.join(seen)})")
        elapsed = time.monotonic() - started
        expect(elapsed < RUN_TIMEOUT_S, f"{run_id} not done after {RUN_TIMEOUT_S:.0f} s: {' -> '.join(seen)}")
        time.sleep(POLL_S)
    state["run"] = run
    return f"{run_id}: {' -> '.join(seen)} in {time.monotonic() - started:.1f} s"


def check_task_instances(api, state):
    run_id = state["run"].dag_run_id
    tis = task_instance_api.TaskInstanceApi(api).get_task_instances(DAG_ID, run_id)
    states = {ti.task_id: state_of(ti.state) for ti in tis.task_instances}
    for task in ("print_hello", "print_date"):
        expect(states.get(task) == "success", f"{task} is {states.get(task)!r}, not 'success': {states}")
    return ", ".join(f"{task} {s}" for task, s in sorted(states.items()))


def check_log(api, state):
    run = state["run"]
    log = task_instance_api.TaskInstanceApi(api).get_log(DAG_ID, run.dag_run_id, "print_date", task_try_number=1)
    content = log.get("content") or ""
    expect(GREETING in content, f"{GREETING!r} not in the log of print_date: {content[-500:]!r}")
    # `{{ ds }}` is the logical date's day in UTC, as in Airflow.
    if run.logical_date is not None:
        ds = run.logical_date.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d")
        expect(f"{GREETING} on {ds}" in content, f"'{GREETING} on {ds}' not in the log: {content[-500:]!r}")
    line = next(line for line in content.splitlines() if GREETING in line)
    return f"print_date try 1: {line.strip()[:120]}"


def check_details(api):
    details = dag_api.DAGApi(api).get_dag_details(DAG_ID)
    expect(details.dag_id == DAG_ID, f"get_dag_details answered {details.dag_id}")
    task = dag_api.DAGApi(api).get_task(DAG_ID, "print_hello")
    expect(task.downstream_task_ids == ["print_date"], f"print_hello's downstream: {task.downstream_task_ids}")
    return f"{DAG_ID}: timezone {details.timezone}, catchup {details.catchup}; print_hello -> {task.downstream_task_ids}"


def check_xcom(api, state):
    run_id = state["run"].dag_run_id
    xcoms = x_com_api.XComApi(api)
    entries = xcoms.get_xcom_entries(DAG_ID, run_id, "print_hello")
    keys = [entry.key for entry in entries.xcom_entries]
    expect(keys == ["return_value"], f"print_hello's XCom keys: {keys}")
    entry = xcoms.get_xcom_entry(DAG_ID, run_id, "print_hello", "return_value")
    expect(entry.value, f"print_hello's return_value is empty: {entry.value!r}")
    return f"print_hello return_value = {str(entry.value)[:60]}"


def tries_of(api, run_id, task_id):
    tries = task_instance_api.TaskInstanceApi(api).get_task_instance_tries(DAG_ID, run_id, task_id)
    return [(t.try_number, state_of(t.state)) for t in tries.task_instances]


def check_clear(api, state):
    run_id = state["run"].dag_run_id
    dags = dag_api.DAGApi(api)
    expect(tries_of(api, run_id, "print_date") == [(1, "success")], f"tries before: {tries_of(api, run_id, 'print_date')}")
    ask = dict(dag_run_id=run_id, task_ids=["print_date"], only_failed=False)
    planned = dags.post_clear_task_instances(DAG_ID, ClearTaskInstances(dry_run=True, **ask))
    expect([t.task_id for t in planned.task_instances] == ["print_date"], f"dry run: {planned.task_instances}")
    expect(tries_of(api, run_id, "print_date") == [(1, "success")], "a dry run changed the task")
    cleared = dags.post_clear_task_instances(DAG_ID, ClearTaskInstances(dry_run=False, **ask))
    expect([t.task_id for t in cleared.task_instances] == ["print_date"], f"clear: {cleared.task_instances}")
    ran = check_run_succeeds(api, state)
    tries = tries_of(api, run_id, "print_date")
    expect(tries == [(1, "success"), (2, "success")], f"print_date's tries after the clear: {tries}")
    return f"print_date cleared and run again: {ran}; tries {tries}"


def check_set_state(api, state):
    run_id = state["run"].dag_run_id
    ref = task_instance_api.TaskInstanceApi(api).patch_task_instance(
        DAG_ID, run_id, "print_date", UpdateTaskInstance(dry_run=True, new_state=UpdateTaskState("failed"))
    )
    expect(ref.task_id == "print_date", f"patch_task_instance answered {ref}")
    tis = task_instance_api.TaskInstanceApi(api).get_task_instance(DAG_ID, run_id, "print_date")
    expect(state_of(tis.state) == "success", f"a dry run changed print_date to {state_of(tis.state)}")
    return f"dry run of failed on {ref.task_id}: unchanged ({state_of(tis.state)})"


def check_batch_lists(api, state):
    run_id = state["run"].dag_run_id
    runs = dag_run_api.DAGRunApi(api).get_dag_runs_batch(ListDagRunsForm(dag_ids=[DAG_ID]))
    expect(run_id in [r.dag_run_id for r in runs.dag_runs], f"{run_id} not in the batch list of runs")
    tis = task_instance_api.TaskInstanceApi(api).get_task_instances_batch(
        ListTaskInstanceForm(dag_ids=[DAG_ID], dag_run_ids=[run_id], state=[TaskState("success")])
    )
    tasks = sorted(ti.task_id for ti in tis.task_instances)
    expect(tasks == ["print_date", "print_hello"], f"successful task instances of {run_id}: {tasks}")
    return f"{runs.total_entries} run(s) of {DAG_ID}; {run_id}: {tasks}"


def check_mark_failed(api, state):
    run_id = state["run"].dag_run_id
    marked = dag_api.DAGApi(api).post_set_task_instances_state(
        DAG_ID,
        UpdateTaskInstancesState(
            dry_run=False, task_id="print_hello", dag_run_id=run_id, include_downstream=True, new_state=UpdateTaskState("failed")
        ),
    )
    tasks = sorted(t.task_id for t in marked.task_instances)
    expect(tasks == ["print_date", "print_hello"], f"marked with downstream: {tasks}")
    tis = task_instance_api.TaskInstanceApi(api).get_task_instances(DAG_ID, run_id)
    states = {ti.task_id: state_of(ti.state) for ti in tis.task_instances}
    expect(set(states.values()) == {"failed"}, f"after marking failed: {states}")
    return f"print_hello and downstream marked failed: {states}"


def check_clear_run(api, state):
    runs = dag_run_api.DAGRunApi(api)
    run_id = state["run"].dag_run_id
    # The answer is one of two shapes (the spec's oneOf), which the client hands over as
    # it came: the task instances a dry run would clear, then the cleared run.
    planned = runs.clear_dag_run(DAG_ID, run_id, ClearDagRun(dry_run=True))
    planned_tasks = sorted(t["task_id"] for t in planned["task_instances"])
    expect(planned_tasks == ["print_date", "print_hello"], f"a dry run would clear {planned_tasks}")
    cleared = runs.clear_dag_run(DAG_ID, run_id, ClearDagRun(dry_run=False))
    expect(cleared["dag_run_id"] == run_id, f"clear_dag_run answered {cleared}")
    ran = check_run_succeeds(api, state)
    return f"the whole run cleared and run again: {ran}"


def check_notes(api, state):
    run_id = state["run"].dag_run_id
    run = dag_run_api.DAGRunApi(api).set_dag_run_note(DAG_ID, run_id, SetDagRunNote(note="checked by the client"))
    expect(run.note == "checked by the client", f"the run's note: {run.note!r}")
    ti = task_instance_api.TaskInstanceApi(api).set_task_instance_note(
        DAG_ID, run_id, "print_date", SetTaskInstanceNote(note="looked at the log")
    )
    expect(ti.note == "looked at the log", f"print_date's note: {ti.note!r}")
    again = dag_run_api.DAGRunApi(api).get_dag_run(DAG_ID, run_id)
    expect(again.note == "checked by the client", f"the note read back: {again.note!r}")
    return f"run note {run.note!r}, task note {ti.note!r}"


def check_tries(api, state):
    run_id = state["run"].dag_run_id
    tries = tries_of(api, run_id, "print_date")
    expect(len(tries) >= 3 and tries[-1][1] == "success", f"print_date's tries: {tries}")
    last = task_instance_api.TaskInstanceApi(api).get_task_instance_try_details(DAG_ID, run_id, "print_date", tries[-1][0])
    expect(last.try_number == tries[-1][0], f"try {tries[-1][0]} answered as try {last.try_number}")
    return f"print_date: {tries}"


def check_event_log(api, user):
    logs = event_log_api.EventLogApi(api).get_event_logs(dag_id=DAG_ID, order_by="-event_log_id", limit=100)
    events = [entry.event for entry in logs.event_logs]
    for event in ("trigger", "clear", "mark_failed", "set_note", "unpause"):
        expect(event in events, f"no `{event}` in the event log of {DAG_ID}: {events}")
    expect(all(entry.owner == user for entry in logs.event_logs), "an entry not by the client's user")
    one = event_log_api.EventLogApi(api).get_event_log(logs.event_logs[0].event_log_id)
    expect(one.event == events[0], f"get_event_log answered {one.event}")
    return f"{logs.total_entries} entries for {DAG_ID}, newest {events[:5]}"


def check_source_and_warnings(api):
    dag = dag_api.DAGApi(api).get_dag(DAG_ID)
    source = dag_api.DAGApi(api).get_dag_source(dag.file_token)
    content = source.get("content") or ""
    expect(f"id: {DAG_ID}" in content and "crate::tasks::example::print_hello" in content, f"source: {content[:300]!r}")
    warnings = dag_warning_api.DagWarningApi(api).get_dag_warnings()
    return f"{len(content.splitlines())} lines of source; {warnings.total_entries} compiler warning(s)"


def check_users_and_roles(api, user):
    users = user_api.UserApi(api).get_users()
    expect(user in [u.username for u in users.users], f"{user} not among the users")
    roles = role_api.RoleApi(api).get_roles()
    names = sorted(r.name for r in roles.roles)
    expect(names == ["Admin", "Op", "User", "Viewer"], f"roles: {names}")
    return f"{users.total_entries} user(s); roles {names}"


def check_config(api):
    config = config_api.ConfigApi(api).get_config()
    sections = [section.name for section in config.sections]
    expect("core" in sections, f"config sections: {sections}")
    options = {o.key: o.value for s in config.sections for o in s.options}
    expect("***" in options.get("database_url", "***") or options.get("database_url") == "< hidden >", "a secret shown")
    return f"sections {sections}"


def check_stats(api):
    stats = dag_stats_api.DagStatsApi(api).get_dag_stats(DAG_ID)
    counts = {str(s.state): s.count for s in stats.dags[0].stats}
    expect(counts.get("success", 0) >= 1, f"dagStats of {DAG_ID}: {counts}")
    return f"{DAG_ID}: {counts}"


def check_variables(api, key):
    variables = variable_api.VariableApi(api)
    value = f"value of {key}"
    created = variables.post_variables(Variable(key=key, value=value))
    expect((created.key, created.value) == (key, value), f"post_variables answered {created}")
    read = variables.get_variable(key)
    expect((read.key, read.value) == (key, value), f"get_variable answered {read}")
    variables.delete_variable(key)
    expect_status(404, lambda: variables.get_variable(key))
    return f"{key}: post_variables, get_variable, delete_variable, then 404"


def check_connections(api, connection_id):
    connections = connection_api.ConnectionApi(api)
    new = Connection(connection_id=connection_id, conn_type="http", host="example.com", login="u", password="p")
    for call, answer in (
        ("post_connection", lambda: connections.post_connection(new)),
        ("get_connection", lambda: connections.get_connection(connection_id)),
    ):
        conn = answer()
        got = (conn.connection_id, conn.conn_type, conn.get("host"), conn.get("login"))
        expect(got == (connection_id, "http", "example.com", "u"), f"{call} answered {conn}")
        expect(conn.get("password") is None, f"{call} gave the password back: {conn}")
    connections.delete_connection(connection_id)
    expect_status(404, lambda: connections.get_connection(connection_id))
    return f"{connection_id}: post_connection, get_connection (no password), delete_connection, then 404"


def check_wrong_password(url, user, password):
    configuration = airflow_client.client.Configuration(host=url, username=user, password=password + "-wrong")
    with airflow_client.client.ApiClient(configuration) as api:
        expect_status(401, lambda: dag_api.DAGApi(api).get_dags())
    return "get_dags with a wrong password: 401"


# --- the runner ---------------------------------------------------------------------------------


def run_step(name, check, *args):
    try:
        detail = check(*args)
    except Failure as error:
        fail(name, str(error))
    except ApiException as error:
        fail(name, describe_api_error(error) + call_site(error))
    except OpenApiException as error:
        # ApiTypeError / ApiValueError / ApiAttributeError: the response does not fit the models.
        rejected = f"the client rejected the server's response: {type(error).__name__}: {error}"
        fail(name, rejected + call_site(error))
    except urllib3.exceptions.HTTPError as error:
        fail(name, f"cannot reach the server: {error}")
    print(f"ok   {name}: {detail}", flush=True)


def fail(name, message):
    # One line, as every other step: model reprs and response bodies span several.
    print(f"FAIL {name}: {' '.join(message.split())}", flush=True)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the API root, e.g. http://127.0.0.1:8080/api/v1")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()

    version = importlib.metadata.version(CLIENT)
    print(f"ok   client: {CLIENT} {version} against {args.url} as {args.user}", flush=True)
    suffix = uuid.uuid4().hex[:8]
    state = {}
    configuration = airflow_client.client.Configuration(host=args.url, username=args.user, password=args.password)
    with airflow_client.client.ApiClient(configuration) as api:
        run_step("health", check_health, api)
        run_step("list DAGs", check_list_dags, api)
        run_step("get DAG", check_get_dag, api)
        run_step("tasks", check_tasks, api)
        run_step("unpause", check_unpause, api)
        run_step("trigger", check_trigger, api, state)
        run_step("run", check_run_succeeds, api, state)
        run_step("task instances", check_task_instances, api, state)
        run_step("log", check_log, api, state)
        run_step("details", check_details, api)
        run_step("xcom", check_xcom, api, state)
        run_step("clear", check_clear, api, state)
        run_step("set state", check_set_state, api, state)
        run_step("batch lists", check_batch_lists, api, state)
        run_step("mark failed", check_mark_failed, api, state)
        run_step("clear run", check_clear_run, api, state)
        run_step("notes", check_notes, api, state)
        run_step("tries", check_tries, api, state)
        run_step("event log", check_event_log, api, args.user)
        run_step("source and warnings", check_source_and_warnings, api)
        run_step("users and roles", check_users_and_roles, api, args.user)
        run_step("config", check_config, api)
        run_step("dag stats", check_stats, api)
        run_step("variables", check_variables, api, f"client_check_{suffix}")
        run_step("connections", check_connections, api, f"client_check_{suffix}")
    run_step("wrong password", check_wrong_password, args.url, args.user, args.password)
    print("ok   all checks passed", flush=True)


if __name__ == "__main__":
    main()
