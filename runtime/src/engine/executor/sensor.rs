//! Sensors in `poke` mode: the try keeps its slots and pokes again after each "not yet",
//! until the condition holds or the sensor's `timeout` passes. (In `reschedule` mode each
//! poke is a try of its own; the store decides when the next one is due, see
//! [`crate::rules::after_not_ready`].)

use super::Step;
use crate::spec::SensorSpec;
use crate::task::{Ending, TaskError, TaskInput};
use std::time::Duration;

pub(super) async fn poke(
    step: &Step<'_>,
    sensor: &SensorSpec,
    input: TaskInput,
) -> Result<serde_json::Value, TaskError> {
    let started = tokio::time::Instant::now();
    let limit = Duration::from_secs(sensor.timeout_secs);
    let interval = Duration::from_secs(sensor.poke_interval_secs.max(1));
    let log = input.log.clone();
    for poke in 1u64.. {
        match step.run(input.clone()).await {
            Err(e) if e.ending == Ending::NotReady => {
                if started.elapsed() >= limit {
                    return Err(timed_out(sensor, &e.message));
                }
                log.info(format!("Poke {poke}: {}; poking again in {}s", e.message, interval.as_secs()));
                tokio::time::sleep(interval).await;
            }
            done => return done,
        }
    }
    Err(timed_out(sensor, "too many pokes"))
}

/// The end of a sensor whose condition did not hold within its `timeout`: a failure, or a
/// skip with `soft_fail`.
pub(crate) fn timed_out(sensor: &SensorSpec, last: &str) -> TaskError {
    let message = format!(
        "the sensor timed out after {}s without its condition holding (last poke: {last})",
        sensor.timeout_secs
    );
    if sensor.soft_fail {
        TaskError::skip(format!("{message}; skipped, as `soft_fail` says"))
    } else {
        TaskError::new(message)
    }
}
