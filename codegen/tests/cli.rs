//! `sluice-codegen` as a user runs it: exit codes, output formats, files written.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

const SAMPLE: &str = include_str!("../../pipelines.yaml");
/// The sample's Python task module, which the compiler checks beside the pipelines file.
const SAMPLE_PYTHON: (&str, &str) = ("tasks/games_report.py", include_str!("../../tasks/games_report.py"));

/// A scratch project directory with a `pipelines.yaml` (and the sample's Python module).
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(yaml: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("pipelines.yaml"), yaml).expect("write yaml");
        let (module, text) = SAMPLE_PYTHON;
        fs::create_dir_all(dir.path().join("tasks")).expect("tasks folder");
        fs::write(dir.path().join(module), text).expect("write the Python module");
        Project { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sluice-codegen"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("sluice-codegen runs")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_exit_codes() {
    let clean = Project::new(SAMPLE);
    let out = clean.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok, 4 pipeline(s)"));

    let broken = Project::new(&SAMPLE.replace("schedule: \"0 6 * * *\"", "schedule: \"0 6 * *\""));
    let out = broken.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error[invalid-cron]"), "{stderr}");
    assert!(stderr.contains("pipelines.yaml:"), "names the file: {stderr}");
    assert!(stderr.contains("error: 1 error, 0 warnings in pipelines.yaml"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let usage = clean.run(&["check", "--no-such-flag"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn warnings_pass_unless_denied() {
    let warned = Project::new(&SAMPLE.replace("maxmemory_policy: noeviction", "maxmemory_policy: allkeys-lru"));
    let out = warned.run(&["check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("warning[evicting-broker]"));
    let denied = warned.run(&["--deny-warnings", "check"]);
    assert_eq!(denied.status.code(), Some(1));
}

#[test]
fn json_diagnostics_carry_locations() {
    let yaml = SAMPLE.replace("depends_on: [validate]", "depends_on: [validat]");
    let broken = Project::new(&yaml);
    let out = broken.run(&["check", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let items: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let first = &items[0];
    assert_eq!(first["code"], "unknown-task");
    assert_eq!(first["file"], "pipelines.yaml");
    let line = first["line"].as_u64().expect("line") as usize;
    let source_line = yaml.lines().nth(line - 1).expect("line exists");
    assert!(source_line.contains("[validat]"), "line {line} is `{source_line}`");
    assert_eq!(first["source_line"], source_line);
    assert_eq!(first["hint"], "did you mean `validate`?");
}

#[test]
fn missing_file_is_one_clear_sentence() {
    let project = Project::new(SAMPLE);
    let out = project.run(&["check", "--file", "nope.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "error: nope.yaml not found; run from the project root or pass `--file PATH`\n");
}

#[test]
fn generate_writes_once_and_check_detects_staleness() {
    let project = Project::new(SAMPLE);
    let out = project.run(&["generate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for file in [
        "docker-compose.yml",
        "pgbouncer/pgbouncer.ini",
        "redis/redis.conf",
        ".env.example",
        "Dockerfile",
        "pipelines.lock.json",
    ] {
        assert!(project.path("generated").join(file).is_file(), "{file} generated");
    }
    let again = project.run(&["generate"]);
    assert_eq!(text(&again.stdout), "", "a second run rewrites nothing");
    assert_eq!(project.run(&["generate", "--check"]).status.code(), Some(0));

    fs::write(project.path("generated/redis/redis.conf"), "edited by hand\n").expect("edit");
    let stale = project.run(&["generate", "--check"]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(text(&stale.stderr).contains("redis/redis.conf"), "{}", text(&stale.stderr));
}

#[test]
fn plan_is_detailed_exitcode() {
    let project = Project::new(SAMPLE);
    assert_eq!(project.run(&["generate"]).status.code(), Some(0));
    let same = project.run(&["plan"]);
    assert_eq!(same.status.code(), Some(0));
    assert!(text(&same.stdout).contains("No changes."));

    let edited = SAMPLE
        .replace("schedule: \"0 6 * * *\"", "schedule: \"30 5 * * *\"")
        .replace("      - id: load\n", "      - id: load_warehouse\n        renamed_from: [load]\n")
        .replace("  - id: redis_default", "  - id: redis_cache");
    fs::write(project.path("pipelines.yaml"), edited).expect("edit yaml");
    let out = project.run(&["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(plan.contains("~ pipeline sports_data_scraper"), "{plan}");
    assert!(plan.contains("~ schedule: 0 6 * * * (UTC) -> 30 5 * * * (UTC)"), "{plan}");
    assert!(plan.contains("next runs after:") && plan.contains("05:30 UTC"), "{plan}");
    assert!(plan.contains("~ task load_warehouse renamed from load (history kept)"), "{plan}");
    assert!(plan.contains("+ connection redis_cache (redis)"), "{plan}");
    assert!(plan.contains("- connection redis_default (redis)"), "{plan}");

    fs::write(project.path("generated/pipelines.lock.json"), "{ not json").expect("corrupt lock");
    assert_eq!(project.run(&["plan"]).status.code(), Some(1));
}

#[test]
fn plan_reports_added_and_removed_pipelines_and_tasks() {
    let project = Project::new(SAMPLE);
    assert_eq!(project.run(&["generate"]).status.code(), Some(0));
    let without_example = {
        let start = SAMPLE.find("  - id: example_dag").expect("example_dag");
        let end = SAMPLE.find("  - id: sports_data_scraper").expect("scraper");
        format!("{}{}", &SAMPLE[..start], &SAMPLE[end..])
    };
    let with_new = without_example.replace(
        "      - id: deploy\n",
        "      - id: notify\n        shell: echo trained\n        depends_on: [evaluate]\n      - id: deploy\n",
    );
    fs::write(project.path("pipelines.yaml"), with_new).expect("edit yaml");
    let out = project.run(&["plan"]);
    let plan = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2));
    assert!(plan.contains("- pipeline example_dag (becomes inactive"), "{plan}");
    assert!(plan.contains("    + task notify (shell)"), "{plan}");
    assert!(plan.contains("Plan: 0 pipeline(s) to add, 1 to change, 1 to remove"), "{plan}");
}

#[test]
fn plan_reports_datasets_and_the_authoring_keys() {
    let project = Project::new(SAMPLE);
    assert_eq!(project.run(&["generate"]).status.code(), Some(0));
    let changed = SAMPLE
        .replace(
            "    description: The `games` table of `postgres_mlsp`, upserted by the daily scrape\n",
            "    description: The `games` table of `postgres_mlsp`, upserted by the daily scrape\n  - id: models\n    uri: mlflow://models\n",
        )
        .replace("        produces: [games]\n", "        produces: [games, models]\n")
        .replace(
            "        branch: [write_report, not_enough_games]\n",
            "        branch: [write_report, not_enough_games]\n        sensor: {poke_interval: 30s, mode: reschedule}\n",
        );
    fs::write(project.path("pipelines.yaml"), changed).expect("edit yaml");
    let out = project.run(&["plan"]);
    let plan = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{plan}{}", text(&out.stderr));
    assert!(plan.contains("+ dataset models (mlflow://models)"), "{plan}");
    assert!(plan.contains(r#"    ~ task load: produces: ["games"] -> ["games","models"]"#), "{plan}");
    assert!(
        plan.contains(r#"    ~ task enough_games: sensor: none -> {"exit_code":100,"mode":"reschedule""#),
        "{plan}"
    );
    assert!(plan.contains("1 connection/pool/dataset change(s)"), "{plan}");
}
