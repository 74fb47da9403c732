//! What a template may name at its top level, as Airflow's template context names it
//! (`pipeline_id` is Sluice's `dag_id`). The compiler rejects any other name before
//! deploy; the runtime fills exactly these.

pub const TEMPLATE_VARIABLES: &[&str] = &[
    "ds",
    "ds_nodash",
    "ts",
    "ts_nodash",
    "logical_date",
    "data_interval_start",
    "data_interval_end",
    "run_id",
    "pipeline_id",
    "task_id",
    "try_number",
    "params",
    "var",
    "conn",
    "upstream",
    "dag_run",
    "macros",
    "prev_data_interval_start_success",
    "prev_start_date_success",
];

/// What `macros` has: Airflow's `macros.ds_add`, `ds_format`, `datetime`, `timedelta`.
pub const MACROS: &[&str] = &["ds_add", "ds_format", "datetime", "timedelta"];

/// What `dag_run` has: the run's facts, as Airflow's `DagRun` names them.
pub const DAG_RUN_ATTRIBUTES: &[&str] =
    &["conf", "run_id", "run_type", "dag_id", "logical_date", "data_interval_start", "data_interval_end"];
