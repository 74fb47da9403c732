//! Tables for people, JSON for scripts.

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Prints rows (objects with the same keys, in `columns` order) as a table or JSON.
pub fn print(output: Output, columns: &[&str], rows: &[Value]) {
    print!("{}", render(output, columns, rows));
}

/// What [`print`] prints: the table of `columns`, or every key of the rows as JSON.
pub fn render(output: Output, columns: &[&str], rows: &[Value]) -> String {
    match output {
        Output::Json => serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".into()) + "\n",
        Output::Table => table(columns, rows),
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

pub fn table(columns: &[&str], rows: &[Value]) -> String {
    let cells: Vec<Vec<String>> =
        rows.iter().map(|r| columns.iter().map(|c| cell(r.get(*c).unwrap_or(&Value::Null))).collect()).collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| c.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join(" | ").trim_end().to_string() + "\n"
    };
    let header: Vec<String> = columns.iter().map(|c| (*c).to_string()).collect();
    let mut out = line(&header);
    out += &(widths.iter().map(|w| "=".repeat(*w)).collect::<Vec<_>>().join("=|=") + "\n");
    for row in &cells {
        out += &line(row);
    }
    out
}
