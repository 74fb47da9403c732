//! What shapes when and how tasks run rather than what they run: a task's `sensor:`, and
//! the `datasets:` that tasks produce and pipelines are scheduled on.

use super::*;

pub(super) const DATASET_KEYS: &[&str] = &["id", "uri", "description"];

pub(super) const SENSOR_KEYS: &[&str] = &["poke_interval", "timeout", "mode", "soft_fail", "exit_code"];

impl Lowerer<'_> {
    /// `sensor: {poke_interval, timeout, mode, soft_fail, exit_code}`, Airflow's defaults for
    /// what is left out (60s, 7 days, poke, false; exit code 100).
    pub(super) fn sensor(&mut self, node: &Node, what: &str) -> Option<Sensor> {
        let sw = format!("`sensor` of {what}");
        let s = match &node.value {
            // `sensor: {}` or a bare `sensor:`: every default.
            Value::Null => Fields { span: node.span, entries: Vec::new() },
            _ => self.fields(node, &sw, SENSOR_KEYS)?,
        };
        let duration_or = |l: &mut Self, key: &str, default: u64| match s.value(key) {
            Some(n) => l.duration(n, &format!("`{key}` of {sw}")).map(|secs| Sp::new(secs, n.span)),
            None => Some(Sp::new(default, s.key_span(key))),
        };
        let poke_interval_secs = duration_or(self, "poke_interval", sluice_contract::defaults::POKE_INTERVAL_SECS);
        let timeout_secs = duration_or(self, "timeout", sluice_contract::defaults::SENSOR_TIMEOUT_SECS);
        let mode_text = self.string_or(&s, "mode", &sw, "poke");
        let mode = match SensorMode::ALL.iter().find(|(name, _)| *name == mode_text.value) {
            Some((_, mode)) => Sp::new(*mode, mode_text.span),
            None => {
                // Reported, and read as `poke` so that the sensor's other keys are checked too.
                self.one_of(&mode_text, &["poke", "reschedule"], "mode");
                Sp::new(SensorMode::Poke, mode_text.span)
            }
        };
        let exit_code = self.int_or(&s, "exit_code", &sw, (1, 255), sluice_contract::defaults::NOT_READY_EXIT_CODE);
        Some(Sensor {
            poke_interval_secs: poke_interval_secs?,
            timeout_secs: timeout_secs?,
            mode,
            soft_fail: self.bool_or(&s, "soft_fail", &sw, false).value,
            exit_code,
        })
    }

    /// One entry of `datasets:`.
    pub(super) fn dataset(&mut self, node: &Node, index: usize) -> Option<Dataset> {
        let what = peek_id(node, "id").map_or(format!("dataset #{}", index + 1), |id| format!("dataset `{id}`"));
        let f = self.fields(node, &what, DATASET_KEYS)?;
        let id = self.required(&f, "id", &what, "add `id: games`");
        let uri =
            self.required(&f, "uri", &what, "add `uri:` naming where the data lives, e.g. `postgres://mlsp/games`");
        Some(Dataset {
            description: self.opt_string(&f, "description", &what).map(|s| s.value).unwrap_or_default(),
            id: id?,
            uri: uri?,
        })
    }

    /// `schedule: {datasets: [ids]}`.
    pub(super) fn dataset_schedule(&mut self, node: &Node, what: &str) -> Option<Sp<Schedule>> {
        let f = self.fields(node, &format!("`schedule` of {what}"), &["datasets"])?;
        let Some(list) = f.value("datasets") else {
            self.missing(&f, "datasets", &format!("`schedule` of {what}"), "write `schedule: {datasets: [games]}`");
            return None;
        };
        let ids = self.string_list(&f, "datasets", &format!("`schedule` of {what}"));
        if ids.is_empty() {
            self.error(
                "invalid-value",
                list.span,
                format!("`schedule` of {what} waits for no dataset"),
                Some(
                    "name at least one dataset, or write `schedule: null` for a pipeline run only when triggered"
                        .into(),
                ),
            );
            return None;
        }
        Some(Sp::new(Schedule::Datasets(ids), node.span))
    }
}
