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
];
