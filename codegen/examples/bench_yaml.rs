//! Prints a large, valid pipelines file for the compile benchmark:
//! `cargo run --release -p sluice-codegen --example bench_yaml -- 1000 20 > big.yaml`
//! (pipelines, tasks per pipeline). Every pipeline has a cron schedule, params, a fan-out
//! and a join, so all checks run.

use std::fmt::Write;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let (Some(Ok(pipelines)), Some(Ok(tasks))) = (args.next(), args.next()) else {
        eprintln!("usage: bench_yaml PIPELINES TASKS_PER_PIPELINE");
        std::process::exit(2);
    };
    let mut out = String::from(
        "deployment:\n  project: bench\n  executor:\n    queues: [default, heavy]\nconnections:\n  - {id: api, type: http, host: api}\n  - {id: db, type: postgres, host: db, password: \"${DB_PASSWORD}\"}\npools:\n  - {name: limited, slots: 8}\npipelines:\n",
    );
    for p in 0..pipelines {
        let _ = write!(
            out,
            "  - id: pipeline_{p}\n    schedule: \"{} {} * * *\"\n    timezone: Europe/Berlin\n    start_date: 2024-01-01\n    params:\n      limit: {{type: int, default: 10}}\n    default_args:\n      retries: 2\n      retry_delay: 1m\n    tasks:\n",
            p % 60,
            p % 24
        );
        for t in 0..tasks {
            let deps = match t {
                0 => String::new(),
                t if t == tasks - 1 => {
                    format!(", depends_on: [{}]", (1..t).map(|d| format!("t{d}")).collect::<Vec<_>>().join(", "))
                }
                _ => ", depends_on: [t0]".to_string(),
            };
            let body = match t % 4 {
                0 => format!("shell: \"echo {{{{ ds }}}} {{{{ params.limit }}}} {t}\""),
                1 => "http: {conn: api, endpoint: \"/items/{{ ds_nodash }}\"}".to_string(),
                2 => "sql: {conn: db, statement: \"SELECT {{ params.limit }}\"}".to_string(),
                _ => "shell: echo done, pool: limited, queue: heavy".to_string(),
            };
            let _ = writeln!(out, "      - {{id: t{t}, {body}{deps}}}");
        }
    }
    print!("{out}");
}
