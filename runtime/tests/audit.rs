//! The audit log on SQLite and PostgreSQL: a store acting for a person records each change
//! it makes, with who, when, what and from where, in the change's own transaction; the
//! scheduler's own steps record nothing, and no record holds a secret.

mod support;

use sluice_runtime::connection::Connection;
use sluice_runtime::crypto::Crypto;
use sluice_runtime::rules::TiState;
use sluice_runtime::spec::*;
use sluice_runtime::store::{Actor, AuditFilter, AuditOrder, AuditRow, Store, Surface};
use std::sync::LazyLock;
use support::*;

static CHAIN: LazyLock<[PipelineSpec; 1]> =
    LazyLock::new(|| [graphed(pipeline("audited", Schedule::Manual, &const { [task("a", &[]), task("b", &["a"])] }))]);

async fn records(store: &Store, filter: &AuditFilter) -> Vec<AuditRow> {
    store.audit_log(filter, (AuditOrder::Id, true), 1000, 0).await.expect("audit log").0
}

fn events(rows: &[AuditRow]) -> Vec<&str> {
    rows.iter().map(|r| r.event.as_str()).collect()
}

#[tokio::test]
async fn every_change_of_an_acting_store_is_recorded_with_who_what_and_where() {
    let crypto = Crypto::from_env_value(Some(&Crypto::generate_key())).expect("a key");
    for db in &BACKENDS {
        let (plain, _) = store(db).await;
        plain.sync_pipelines(registry(&CHAIN[..], &[])).await.expect("sync");
        let p = &CHAIN[0];
        // The scheduler's own run: no person, no record.
        sluice_runtime::scheduler::trigger(&plain, p, serde_json::json!({}), Some(T0)).await.expect("scheduled");
        assert!(records(&plain, &AuditFilter::default()).await.is_empty(), "{db:?}: the scheduler records nothing");

        let alice = plain.acting_as(Actor::new("alice", Surface::Api, "10.0.0.7"));
        let run = sluice_runtime::scheduler::trigger(&alice, p, serde_json::json!({}), Some(T0 + 1_000_000))
            .await
            .expect("triggered");
        alice.set_paused("audited", true).await.expect("pause");
        alice.mark_tasks(p, run.id, &["a"], TiState::Failed, 8).await.expect("mark");
        alice.clear_tasks(p, run.id, &["a", "b"]).await.expect("clear");
        alice.set_run_note(run.id, Some("looked at it")).await.expect("note");
        alice.set_variable("region", "eu", false, None, &crypto).await.expect("variable");
        let conn = Connection::from_uri("warehouse", "postgres://loader:s3cret-pw@db:5432/dw").expect("uri");
        alice.add_connection(&conn, &crypto).await.expect("connection");
        alice.delete_run(p, run.id).await.expect("delete");

        let all = records(&plain, &AuditFilter::default()).await;
        assert_eq!(
            events(&all),
            ["trigger", "pause", "mark_failed", "clear", "set_note", "variable.set", "connection.create", "delete_run"],
            "{db:?}"
        );
        for row in &all {
            assert_eq!((row.owner.as_str(), row.surface.as_str(), row.origin.as_str()), ("alice", "api", "10.0.0.7"));
            assert!(row.at >= T0, "{db:?}: {row:?}");
            let extra: serde_json::Value = serde_json::from_str(&row.extra).expect("extra is JSON");
            assert_eq!(extra["surface"], "api", "{db:?}: {row:?}");
            assert_eq!(extra["from"], "10.0.0.7", "{db:?}: {row:?}");
            assert!(!row.extra.contains("s3cret-pw") && !row.extra.contains("\"eu\""), "{db:?}: a secret: {row:?}");
        }
        // The run's records name it, the delete's too (written while the run still existed).
        for event in ["trigger", "mark_failed", "clear", "set_note", "delete_run"] {
            let row = all.iter().find(|r| r.event == event).expect("recorded");
            assert_eq!(
                (row.pipeline_id.as_deref(), row.run_id.as_deref()),
                (Some("audited"), Some(run.run_id.as_str())),
                "{db:?}: {event}"
            );
        }
        let cleared = all.iter().find(|r| r.event == "clear").expect("clear");
        assert!(cleared.extra.contains(r#""tasks":["a","b"]"#), "{db:?}: {}", cleared.extra);

        // Filters: by event, pipeline, owner, included and excluded events, time.
        let only = |f: AuditFilter| {
            let plain = &plain;
            async move { events(&records(plain, &f).await).join(",") }
        };
        assert_eq!(only(AuditFilter { event: Some("pause".into()), ..AuditFilter::default() }).await, "pause");
        assert_eq!(
            only(AuditFilter { pipeline: Some("audited".into()), ..AuditFilter::default() }).await,
            "trigger,pause,mark_failed,clear,set_note,delete_run"
        );
        assert_eq!(only(AuditFilter { owner: Some("bob".into()), ..AuditFilter::default() }).await, "");
        assert_eq!(
            only(AuditFilter { included_events: Some(vec!["pause".into(), "clear".into()]), ..AuditFilter::default() })
                .await,
            "pause,clear"
        );
        assert_eq!(
            only(AuditFilter {
                excluded_events: Some(vec!["trigger".into(), "delete_run".into(), "set_note".into()]),
                pipeline: Some("audited".into()),
                ..AuditFilter::default()
            })
            .await,
            "pause,mark_failed,clear"
        );
        let later = AuditFilter { at: (Some(all[0].at + 1), None), ..AuditFilter::default() };
        assert!(records(&plain, &later).await.iter().all(|r| r.at > all[0].at), "{db:?}");
        let (page, total) =
            plain.audit_log(&AuditFilter::default(), (AuditOrder::Id, false), 2, 1).await.expect("page");
        assert_eq!((events(&page), total), (vec!["connection.create", "variable.set"], 8), "{db:?}");
        assert_eq!(plain.audit_entry(all[1].id).await.expect("one"), all[1], "{db:?}");
    }
}

#[tokio::test]
async fn a_change_that_fails_leaves_no_record_and_a_record_that_fails_undoes_its_change() {
    let crypto = Crypto::from_env_value(Some(&Crypto::generate_key())).expect("a key");
    for db in &BACKENDS {
        let (plain, _) = store(db).await;
        let bob = plain.acting_as(Actor::new("bob", Surface::Cli, "laptop"));
        assert!(bob.delete_variable("missing").await.is_err());
        bob.set_variable("kept", "1", false, None, &crypto).await.expect("set");
        assert!(bob.add_connection(&Connection::from_uri("c", "http://h").expect("uri"), &crypto).await.is_ok());
        assert!(bob.add_connection(&Connection::from_uri("c", "http://h").expect("uri"), &crypto).await.is_err());
        assert_eq!(events(&records(&plain, &AuditFilter::default()).await), ["variable.set", "connection.create"]);

        // With no audit log to write to, the change itself does not land: one transaction.
        plain.execute_admin("DROP TABLE audit_log").await.expect("drop the audit log");
        assert!(bob.set_variable("lost", "1", false, None, &crypto).await.is_err(), "{db:?}");
        assert_eq!(plain.variable("lost", &crypto).await.expect("read"), None, "{db:?}: the change was undone");
        plain.set_variable("unaudited", "1", false, None, &crypto).await.expect("the scheduler's store writes none");
    }
}
