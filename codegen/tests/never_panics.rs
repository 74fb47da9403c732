//! Whatever the input, the compiler answers with diagnostics or a model: never a panic.
//! Two generators: arbitrary text, and the sample file with random edits (which reaches
//! far deeper into lowering and validation than random bytes do).

use proptest::prelude::*;
use sluice_codegen::emit;

const SAMPLE: &str = include_str!("../../pipelines.yaml");

/// Compiles and, when clean, emits everything: emission must not panic either.
fn compile_everything(text: &str) {
    if let Ok(compiled) = sluice_codegen::compile_str("fuzz.yaml", text) {
        let file = sluice_codegen::source::SourceFile::new("fuzz.yaml", text);
        let _ = emit::rust::render(&compiled.config, &file, &compiled.warnings);
        let _ = sluice_codegen::build::generated_files(&compiled, "fuzz.yaml");
        let _ = sluice_codegen::plan::plan(&compiled.config, &compiled.config);
    }
}

/// Tokens that mean something in YAML or in our schema.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(":".to_string()),
        Just("- ".to_string()),
        Just("\n".to_string()),
        Just("  ".to_string()),
        Just("{{".to_string()),
        Just("}}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("\"".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("${X}".to_string()),
        Just("depends_on: [".to_string()),
        Just("schedule: ".to_string()),
        Just("*/0".to_string()),
        Just("@once".to_string()),
        Just("~".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        "[a-z_]{1,8}".prop_map(|s| s),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    DuplicateLine { line: usize },
    DropLine { line: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), token()).prop_map(|(at, text)| Edit::Insert { at, text }),
        any::<usize>().prop_map(|line| Edit::DuplicateLine { line }),
        any::<usize>().prop_map(|line| Edit::DropLine { line }),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let boundary = |s: &str, at: usize| {
        let mut at = at % (s.len() + 1);
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        at
    };
    match edit {
        Edit::Delete { at, len } => {
            let start = boundary(text, *at);
            let end = boundary(text, (start + len).min(text.len()));
            format!("{}{}", &text[..start], &text[end.max(start)..])
        }
        Edit::Insert { at, text: t } => {
            let at = boundary(text, *at);
            format!("{}{t}{}", &text[..at], &text[at..])
        }
        Edit::DuplicateLine { line } | Edit::DropLine { line } => {
            let mut lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                return text.to_string();
            }
            let i = line % lines.len();
            if matches!(edit, Edit::DuplicateLine { .. }) {
                lines.insert(i, lines[i]);
            } else {
                lines.remove(i);
            }
            lines.join("\n")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        compile_everything(&text);
    }

    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(token(), 0..80)) {
        compile_everything(&tokens.concat());
    }

    #[test]
    fn edited_sample_never_panics(edits in prop::collection::vec(edit(), 1..6)) {
        let text = edits.iter().fold(SAMPLE.to_string(), |t, e| apply(&t, e));
        compile_everything(&text);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let text = format!("pipelines: {}{}", "[".repeat(5000), "]".repeat(5000));
    assert!(sluice_codegen::compile_str("deep.yaml", &text).is_err());
    let text = format!("pipelines:\n{}", (0..3000).map(|i| format!("{}- x\n", " ".repeat(i * 2))).collect::<String>());
    assert!(sluice_codegen::compile_str("deep.yaml", &text).is_err());
}

#[test]
fn a_long_chain_does_not_overflow_cycle_detection() {
    let mut text = String::from("pipelines:\n  - id: chain\n    tasks:\n      - {id: t0, shell: echo}\n");
    for i in 1..20_000 {
        text += &format!("      - {{id: t{i}, shell: echo, depends_on: [t{}]}}\n", i - 1);
    }
    let compiled = sluice_codegen::compile_str("chain.yaml", &text).expect("a chain is valid");
    assert_eq!(compiled.config.pipelines[0].tasks.len(), 20_000);
}
