//! The pipeline page's grid, graph and durations, written as HTML and SVG here rather than
//! in the template: a 10,000-task pipeline has 10,000 rows, nodes and edges, and the page
//! reloads every two seconds while a run is active. The template engine's per-value work
//! (lookups, escaping through dynamic values) cost most of such a page's time; these
//! loops write straight into one string. Every text that comes from outside is escaped.

use crate::clock::Micros;
use crate::connection::uri::encode;
use crate::spec::PipelineSpec;
use crate::store::{RunRow, TiRow};
use minijinja::HtmlEscape;
use std::collections::HashMap;
use std::fmt::Write;

/// Width of a graph node, and the gaps between columns and rows.
const NODE_W: usize = 160;
const GAP_X: usize = 40;
const GAP_Y: usize = 44;
/// Width of the durations' bar area.
const GANTT_W: f64 = 460.0;

/// One run of the grid: its row in the store and the state of each of its task instances.
pub(super) struct GridRun<'a> {
    pub run: &'a RunRow,
    pub states: HashMap<&'a str, &'static str>,
}

/// The grid: a row per task, a column per run, each cell linking to its task instance.
/// Each run's header picks that run for the page (`?run=`); the run at `picked` is marked.
pub(super) fn grid(p: &PipelineSpec, runs: &[GridRun<'_>], picked: usize) -> String {
    let mut html = String::with_capacity(256 + p.tasks.len() * (64 + runs.len() * 160));
    html.push_str("<table id=\"grid\">\n<tr><th>Task</th>");
    let paths: Vec<String> = runs.iter().map(|r| encode(&r.run.run_id, b"")).collect();
    for (i, (r, path)) in runs.iter().zip(&paths).enumerate() {
        let _ = write!(
            html,
            "<th class=\"run{}\"><a class=\"run-state\" data-run-id=\"{id}\" data-state=\"{}\" href=\"?run={}\" \
             title=\"{id}: {}\"></a></th>",
            if i == picked { " picked" } else { "" },
            r.run.state.as_str(),
            HtmlEscape(path),
            r.run.state.as_str(),
            id = HtmlEscape(&r.run.run_id),
        );
    }
    html.push_str("</tr>\n");
    let dag = HtmlEscape(p.id);
    for t in p.tasks {
        let id = HtmlEscape(t.id);
        let _ = writeln!(html, "<tr><td>{id}</td>");
        for (r, path) in runs.iter().zip(&paths) {
            let state = r.states.get(t.id).copied();
            let _ = write!(
                html,
                "<td class=\"ti\" data-task-id=\"{id}\" data-run-id=\"{}\" data-state=\"{}\">",
                HtmlEscape(&r.run.run_id),
                state.unwrap_or("none")
            );
            if let Some(state) = state {
                let _ = write!(
                    html,
                    "<a class=\"ti-link\" data-state=\"{state}\" href=\"/dags/{dag}/runs/{}/tasks/{id}\" \
                     title=\"{id}: {state}\"></a>",
                    HtmlEscape(path)
                );
            }
            html.push_str("</td>");
        }
        html.push_str("\n</tr>\n");
    }
    html.push_str("</table>");
    html
}

/// The task graph as SVG: a column per depth, a row per task in its column, in declaration
/// order. Depths and upstream indices are compiled, so this is linear in tasks and edges.
pub(super) fn graph(p: &PipelineSpec, states: &HashMap<&str, &'static str>) -> String {
    let mut rows_in: Vec<usize> = Vec::new();
    let pos: Vec<(usize, usize)> = p
        .tasks
        .iter()
        .map(|t| {
            let d = t.depth as usize;
            if rows_in.len() <= d {
                rows_in.resize(d + 1, 0);
            }
            let row = rows_in[d];
            rows_in[d] += 1;
            (10 + d * (NODE_W + GAP_X), 10 + row * GAP_Y)
        })
        .collect();
    let width = pos.iter().map(|(x, _)| x + NODE_W + 10).max().unwrap_or(200);
    let height = pos.iter().map(|(_, y)| y + 40).max().unwrap_or(60);
    let mut svg = String::with_capacity(256 + p.tasks.len() * 320);
    let _ =
        writeln!(svg, "<svg id=\"graph\" width=\"{width}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">");
    for (t, (x2, y2)) in p.tasks.iter().zip(&pos) {
        for (x1, y1) in t.upstream.iter().filter_map(|&u| pos.get(u as usize)) {
            let _ = write!(
                svg,
                "<line x1=\"{}\" y1=\"{}\" x2=\"{x2}\" y2=\"{}\" stroke=\"#888\"/>",
                x1 + NODE_W,
                y1 + 14,
                y2 + 14
            );
        }
    }
    svg.push('\n');
    for (t, (x, y)) in p.tasks.iter().zip(&pos) {
        let id = HtmlEscape(t.id);
        let state = states.get(t.id).copied().unwrap_or("none");
        let _ = write!(
            svg,
            "<g class=\"node\" data-task-id=\"{id}\" data-state=\"{state}\"><rect x=\"{x}\" y=\"{y}\" \
             width=\"{NODE_W}\" height=\"28\" rx=\"4\" data-state=\"{state}\"/><text x=\"{}\" y=\"{}\">{id}</text></g>",
            x + 8,
            y + 18
        );
    }
    svg.push_str("\n</svg>");
    svg
}

/// How long each task instance of `run` took, as bars on one time scale; `None` when none
/// has started.
pub(super) fn gantt(run: &RunRow, tis: &[TiRow]) -> Option<String> {
    let start = run.start_date.unwrap_or(0);
    let end = tis.iter().filter_map(|t| t.end_date).max().unwrap_or(start).max(start + 1);
    let scale = GANTT_W / (end - start) as f64;
    let bars: Vec<&TiRow> = tis.iter().filter(|ti| ti.start_date.is_some()).collect();
    if bars.is_empty() {
        return None;
    }
    let mut svg = String::with_capacity(128 + bars.len() * 200);
    let _ = writeln!(
        svg,
        "<svg id=\"gantt\" width=\"640\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        bars.len() * 22 + 10
    );
    for (i, ti) in bars.iter().enumerate() {
        let (s, e) = (ti.start_date.unwrap_or(start), ti.end_date.unwrap_or(end));
        let x = ((s - start) as f64 * scale) as i64;
        let w = (((e - s) as f64 * scale) as i64).max(2);
        let _ = write!(
            svg,
            "<g><rect x=\"{}\" y=\"{}\" width=\"{w}\" height=\"16\" data-state=\"{}\"/><text x=\"4\" y=\"{}\">{} {:.2} s</text></g>",
            160 + x,
            i * 22 + 4,
            ti.state.as_str(),
            i * 22 + 17,
            HtmlEscape(&ti.task_id),
            (e - s) as f64 / 1e6
        );
    }
    svg.push_str("\n</svg>");
    Some(svg)
}

/// How many days the calendar shows: twelve weeks.
pub(super) const CALENDAR_DAYS: i64 = 84;
const DAY_MICROS: i64 = 86_400_000_000;

/// A day's outcome from its runs' states: failed if any failed, else running while any is
/// unfinished, else success; `none` for a day without runs.
pub(super) fn day_outcome<'a>(states: impl IntoIterator<Item = &'a str>) -> &'static str {
    let mut outcome = "none";
    for state in states {
        outcome = match (outcome, state) {
            (_, "failed") | ("failed", _) => "failed",
            (_, "running" | "queued") | ("running", _) => "running",
            _ => "success",
        };
    }
    outcome
}

/// The calendar of daily outcomes (UTC days of the runs' logical dates), a column per
/// week ending with the week of `today`, a row per weekday, each day a square titled
/// with its date and run count.
pub(super) fn calendar(runs: &[RunRow], today: Micros) -> String {
    let today_day = today.div_euclid(DAY_MICROS);
    // Day 0 (1970-01-01) was a Thursday: shift so that columns start on Monday.
    let weekday = |day: i64| (day + 3).rem_euclid(7);
    let last_monday = today_day - weekday(today_day);
    let first_monday = last_monday - (CALENDAR_DAYS / 7 - 1) * 7;
    let mut by_day: HashMap<i64, Vec<&str>> = HashMap::new();
    for run in runs {
        by_day.entry(run.logical_date.div_euclid(DAY_MICROS)).or_default().push(run.state.as_str());
    }
    let mut html = String::from("<table id=\"calendar\">\n");
    for row in 0..7 {
        html.push_str("<tr>");
        for week in 0..CALENDAR_DAYS / 7 {
            let day = first_monday + week * 7 + row;
            if day > today_day {
                html.push_str("<td></td>");
                continue;
            }
            let states = by_day.get(&day).map(Vec::as_slice).unwrap_or_default();
            let date = chrono::DateTime::from_timestamp(day * 86_400, 0).map(|d| d.format("%Y-%m-%d").to_string());
            let _ = write!(
                html,
                "<td><span class=\"day\" data-date=\"{date}\" data-state=\"{}\" title=\"{date}: {} run(s)\"></span></td>",
                day_outcome(states.iter().copied()),
                states.len(),
                date = date.unwrap_or_default(),
            );
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{RunState, RunType, TiState};

    fn ti(task_id: &str, state: TiState, start: Option<i64>, end: Option<i64>) -> TiRow {
        TiRow {
            id: 1,
            run_pk: 1,
            task_id: task_id.into(),
            state,
            try_number: 1,
            max_tries: 1,
            priority_weight: 1,
            error: None,
            start_date: start,
            end_date: end,
            pool: "default_pool".into(),
            pool_slots: 1,
            queue: "default".into(),
            queued_at: None,
            worker: None,
            note: None,
        }
    }

    fn run() -> RunRow {
        RunRow {
            id: 1,
            pipeline_id: "p".into(),
            run_id: "manual__<x>".into(),
            run_type: RunType::Manual,
            state: RunState::Running,
            logical_date: 0,
            data_interval_start: 0,
            data_interval_end: 0,
            conf: "{}".into(),
            start_date: Some(1_000_000),
            end_date: None,
            note: None,
        }
    }

    #[test]
    fn durations_draw_a_bar_per_started_task_on_one_scale_and_escape_names() {
        let tis = [
            ti("<first>", TiState::Success, Some(1_000_000), Some(2_000_000)),
            ti("second", TiState::Running, Some(2_000_000), None),
            ti("waiting", TiState::Scheduled, None, None),
        ];
        let svg = gantt(&run(), &tis).expect("two tasks started");
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        assert!(svg.contains("&lt;first&gt; 1.00 s"), "{svg}");
        assert!(!svg.contains("<first>"), "{svg}");
        // The first bar spans the whole scale: the run ends when it does.
        assert!(svg.contains("<rect x=\"160\" y=\"4\" width=\"460\""), "{svg}");
        assert!(!svg.contains("waiting"), "{svg}");
    }

    #[test]
    fn a_day_is_failed_if_any_run_failed_else_running_while_one_is_unfinished() {
        assert_eq!(day_outcome([]), "none");
        assert_eq!(day_outcome(["success", "success"]), "success");
        assert_eq!(day_outcome(["success", "running"]), "running");
        assert_eq!(day_outcome(["failed", "running", "success"]), "failed");
        assert_eq!(day_outcome(["queued", "success"]), "running");
    }

    #[test]
    fn the_calendar_puts_each_run_on_its_day() {
        // 2024-03-06 (a Wednesday) 06:00 UTC, and today 2024-03-07.
        let day = 19_788 * 86_400_000_000_i64;
        let failed = RunRow { logical_date: day + 21_600_000_000, state: RunState::Failed, ..run() };
        let ok = RunRow { logical_date: day + 1, state: RunState::Success, ..run() };
        let html = calendar(&[failed, ok], day + 86_400_000_000 + 5);
        assert!(html.contains(r#"data-date="2024-03-06" data-state="failed" title="2024-03-06: 2 run(s)""#), "{html}");
        assert!(html.contains(r#"data-date="2024-03-07" data-state="none""#), "{html}");
        assert!(!html.contains("2024-03-08"), "no day after today: {html}");
        assert_eq!(html.matches("class=\"day\"").count(), 84 - 3, "twelve weeks, ending on Thursday: {html}");
    }

    #[test]
    fn durations_are_absent_before_any_task_starts() {
        assert_eq!(gantt(&run(), &[ti("a", TiState::Scheduled, None, None)]), None);
    }
}
