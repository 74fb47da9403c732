//! What an operator does to a whole run from the pipeline page: clear it (every task
//! instance not queued or running runs again), mark it success or failed, write its note
//! (Users and above), or delete it with its task instances, tries, logs and outputs (Ops
//! and above). Each is a form with the session's CSRF token, recorded in the audit log.

use super::*;
use crate::repair::{Only, clearable};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RunForm {
    note: String,
}

/// The longest note kept, in characters.
const NOTE_MAX: usize = 1000;

pub(super) async fn run_action(
    State(state): State<AppState>,
    Path((dag_id, run_id, action)): Path<(String, String, String)>,
    CsrfForm { session, form, store }: CsrfForm<User, RunForm>,
) -> Response {
    let Some(p) = state.registry.pipeline(&dag_id) else {
        return (StatusCode::NOT_FOUND, format!("pipeline `{dag_id}` not found")).into_response();
    };
    let run = match state.store.run_by_id(&dag_id, &run_id).await {
        Ok(run) => run,
        Err(e) => return store_error(e),
    };
    let back = Redirect::to(&format!("/dags/{dag_id}?run={}", encode(&run_id, b""))).into_response();
    let done = match action.as_str() {
        "clear" => match state.store.task_instances(run.id).await {
            Ok(instances) => {
                let every: Vec<usize> = (0..p.tasks.len()).collect();
                let ids = clearable(p, &every, &instances, Only::Any);
                store.clear_tasks(p, run.id, &ids).await.map(|_| ())
            }
            Err(e) => Err(e),
        },
        "mark-success" => store.set_run_state(p, run.id, "success").await,
        "mark-failed" => store.set_run_state(p, run.id, "failed").await,
        "note" => {
            let note = form.note.trim();
            if note.chars().count() > NOTE_MAX {
                return (StatusCode::BAD_REQUEST, format!("a note has at most {NOTE_MAX} characters")).into_response();
            }
            store.set_run_note(run.id, (!note.is_empty()).then_some(note)).await
        }
        "delete" if session.role() < Role::Op => {
            return (StatusCode::FORBIDDEN, format!("deleting a run needs the Op role; yours is {}", session.role))
                .into_response();
        }
        "delete" => {
            return match store.delete_run(p, run.id).await {
                Ok(()) => Redirect::to(&format!("/dags/{dag_id}")).into_response(),
                Err(e) => store_error(e),
            };
        }
        _ => return (StatusCode::NOT_FOUND, "unknown action").into_response(),
    };
    if let Err(e) = done {
        return store_error(e);
    }
    state.wake.notify_one();
    back
}
