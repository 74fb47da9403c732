//! The results table: one row per measure, a column per mode, written as markdown.

use crate::deployment::Mode;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug)]
struct Row {
    benchmark: String,
    measure: String,
    goal: String,
    standalone: String,
    distributed: String,
}

#[derive(Debug)]
pub struct Report {
    runs: usize,
    rows: Vec<Row>,
}

impl Report {
    pub fn new(runs: usize) -> Report {
        Report { runs, rows: Vec::new() }
    }

    /// Records `value` for `mode` in the row (`benchmark`, `measure`).
    pub fn add(&mut self, benchmark: &str, measure: &str, goal: &str, mode: Mode, value: String) {
        let index = match self.rows.iter().position(|r| r.benchmark == benchmark && r.measure == measure) {
            Some(index) => index,
            None => {
                self.rows.push(Row {
                    benchmark: benchmark.to_string(),
                    measure: measure.to_string(),
                    goal: goal.to_string(),
                    standalone: "-".into(),
                    distributed: "-".into(),
                });
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[index];
        match mode {
            Mode::Standalone => row.standalone = value,
            Mode::Distributed => row.distributed = value,
        }
    }

    pub fn markdown(&self) -> String {
        let mut text = String::new();
        let mut benchmarks: Vec<&str> = Vec::new();
        for row in &self.rows {
            if !benchmarks.contains(&row.benchmark.as_str()) {
                benchmarks.push(&row.benchmark);
            }
        }
        benchmarks.sort_unstable();
        for benchmark in benchmarks {
            let _ = writeln!(text, "### {benchmark}\n");
            let _ = writeln!(text, "| measure | standalone | distributed | goal |\n|---|---|---|---|");
            for row in self.rows.iter().filter(|r| r.benchmark == benchmark) {
                let _ = writeln!(text, "| {} | {} | {} | {} |", row.measure, row.standalone, row.distributed, row.goal);
            }
            text.push('\n');
        }
        let _ = write!(text, "Figures with three numbers are min / median / max over {} runs.", self.runs);
        text
    }

    pub fn write(&self, path: &Path) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        std::fs::write(path, self.markdown()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// Microseconds as milliseconds.
pub fn millis(micros: i64) -> f64 {
    micros as f64 / 1000.0
}

/// The `p`th percentile (nearest rank) of `values`.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `min / median / max`, or the one value.
pub fn spread(values: &[f64]) -> String {
    let format = |v: f64| if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") };
    match values.len() {
        0 => "-".into(),
        1 => format(values[0]),
        _ => format!(
            "{} / {} / {}",
            format(percentile(values, 0.0)),
            format(percentile(values, 50.0)),
            format(percentile(values, 100.0))
        ),
    }
}
