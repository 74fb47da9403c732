//! The broken-YAML corpus: every file under `tests/broken/` must produce exactly the
//! diagnostics (position, severity, code, message, hint) in its `.expected` twin.
//! `SLUICE_BLESS=1 cargo test -p sluice-codegen --test diagnostics` rewrites the
//! expectations; review the diff before committing it.

use sluice_codegen::diag::{Diagnostic, Severity};
use sluice_codegen::source::SourceFile;
use std::fs;
use std::path::Path;

fn describe(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let severity = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out += &format!("{}:{} {severity}[{}] {}\n", d.span.line, d.span.col, d.code, d.message);
        if let Some(hint) = &d.hint {
            out += &format!("    hint: {hint}\n");
        }
    }
    out
}

#[test]
fn broken_files_report_exact_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let bless = std::env::var_os("SLUICE_BLESS").is_some();
    let mut fixtures: Vec<_> = fs::read_dir(&dir)
        .expect("tests/broken exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 20, "the corpus lost files: {}", fixtures.len());
    let mut failures = Vec::new();
    for path in fixtures {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = fs::read_to_string(&path).expect("fixture is readable");
        let file = SourceFile::from_disk(&path, text);
        let diagnostics = match sluice_codegen::compile(&file) {
            Ok(compiled) => compiled.warnings,
            Err(all) => all,
        };
        assert!(!diagnostics.is_empty(), "{name}: a broken fixture compiled without any diagnostic");
        let actual = describe(&diagnostics);
        let expected_path = path.with_extension("expected");
        if bless {
            fs::write(&expected_path, &actual).expect("write expectation");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!("--- {name}: expected\n{expected}--- actual\n{actual}"));
        }
    }
    assert!(failures.is_empty(), "{} fixture(s) differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_sample_compiles_without_diagnostics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines.yaml");
    let file = SourceFile::new("pipelines.yaml", fs::read_to_string(path).expect("sample exists"));
    let compiled = sluice_codegen::compile(&file).unwrap_or_else(|d| panic!("sample has errors: {}", describe(&d)));
    assert_eq!(describe(&compiled.warnings), "");
    let ids: Vec<&str> = compiled.config.pipelines.iter().map(|p| p.id.value.as_str()).collect();
    assert_eq!(ids, ["example_dag", "games_report", "ml_model_training", "sports_data_scraper"]);
}
