//! One list of secret words (`sluice_contract::secrets`) drives both sides: for every word,
//! the compiler refuses a literal value under an `extra` key that holds it, and the runtime
//! masks the value of such a key wherever it shows a connection's extras. A word the
//! runtime masked but the compiler let through as a literal (the drift this guards) fails
//! here.

use sluice_contract::secrets::SECRET_WORDS;

fn pipelines_with_extra(key: &str) -> String {
    format!(
        "connections:\n  - id: api\n    type: http\n    host: api\n    extra:\n      {key}: literal-value\n\
         pipelines:\n  - id: daily\n    tasks: [{{id: a, shell: echo}}]\n"
    )
}

#[test]
fn every_secret_word_is_refused_as_a_literal_and_masked_at_run_time() {
    for word in SECRET_WORDS {
        let key = format!("my_{word}");
        let diagnostics = sluice_codegen::compile_str("pipelines.yaml", &pipelines_with_extra(&key))
            .err()
            .unwrap_or_else(|| panic!("a literal `{key}` must not compile"));
        assert!(
            diagnostics.iter().any(|d| d.code == "literal-secret"),
            "`{key}`: {:?}",
            diagnostics.iter().map(|d| (d.code, d.message.clone())).collect::<Vec<_>>()
        );

        let extra = serde_json::json!({ key.clone(): "literal-value", "endpoint": "/x" });
        let masked = sluice_runtime::connection::mask_extra(&extra);
        assert_eq!(masked[&key], "***", "`{key}` is masked");
        assert_eq!(masked["endpoint"], "/x", "other keys are shown");
    }
}

#[test]
fn a_reference_to_the_environment_compiles_for_every_secret_word() {
    for word in SECRET_WORDS {
        let yaml = pipelines_with_extra(&format!("my_{word}")).replace("literal-value", "${MY_SECRET}");
        assert!(sluice_codegen::compile_str("pipelines.yaml", &yaml).is_ok(), "`my_{word}: ${{MY_SECRET}}` compiles");
    }
}
