//! Where each pipeline was written: its block of the pipelines file, the Rust paths of its
//! task bodies and the compiler's warnings inside the block, as the `PipelineSource`
//! table the runtime serves (`dagSources`, `dagWarnings`, the pipeline page).

use crate::diag::Diagnostic;
use crate::model::{Pipeline, TaskKind};
use crate::source::{SourceFile, Span};
use proc_macro2::TokenStream;
use quote::quote;

/// The lines (1-based, inclusive) of the block of the sequence item that starts at `at`:
/// the item's first line and every following line indented deeper than its `-`, without
/// trailing blank and comment lines.
pub fn block_lines(text: &str, at: Span) -> (u32, u32) {
    let lines: Vec<&str> = text.lines().collect();
    let first = (at.line.max(1) as usize).min(lines.len().max(1)) - 1;
    let indent = |line: &str| line.len() - line.trim_start().len();
    let Some(head) = lines.get(first) else { return (at.line, at.line) };
    // The item's `-` is at the head line's indentation when the mapping starts on it
    // (`  - id: x`), else the mapping's own column less two (`-` on a line of its own).
    let dash = if head.trim_start().starts_with('-') { indent(head) } else { (at.col as usize).saturating_sub(3) };
    let mut last = first;
    for (i, line) in lines.iter().enumerate().skip(first + 1) {
        if line.trim().is_empty() {
            continue;
        }
        if indent(line) <= dash {
            break;
        }
        last = i;
    }
    // Comments directly after the block are the next item's.
    while last > first && lines[last].trim_start().starts_with('#') {
        last -= 1;
    }
    (first as u32 + 1, last as u32 + 1)
}

/// The `PipelineSource` of every pipeline.
pub fn table(pipelines: &[Pipeline], file: &SourceFile, warnings: &[Diagnostic]) -> Vec<TokenStream> {
    let name = &file.name;
    pipelines
        .iter()
        .map(|p| {
            let (first, last) = block_lines(&file.text, p.at);
            let yaml: String = file
                .text
                .lines()
                .skip(first as usize - 1)
                .take((last - first + 1) as usize)
                .map(|line| format!("{line}\n"))
                .collect();
            let id = &p.id.value;
            let bodies = p.tasks.iter().filter_map(|t| match &t.kind {
                TaskKind::Rust { path } => {
                    let (task, path) = (&t.id.value, &path.value);
                    Some(quote!((#task, #path)))
                }
                _ => None,
            });
            let inside = warnings.iter().filter(|w| (first..=last).contains(&w.span.line)).map(|w| {
                let (code, line, col, message) = (w.code, w.span.line, w.span.col, &w.message);
                quote!(CompilerWarning { code: #code, line: #line, col: #col, message: #message })
            });
            quote! {
                PipelineSource {
                    pipeline: #id,
                    file: #name,
                    line: #first,
                    yaml: #yaml,
                    bodies: &[#(#bodies),*],
                    warnings: &[#(#inside),*],
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
pipelines:
  - id: first
    tasks:
      - id: a

        rust: crate::a
  # the second one
  - id: second
    tasks: []
deployment:
  project: p
";

    fn at(line: u32, col: u32) -> Span {
        Span { line, col, offset: 0, len: 0 }
    }

    #[test]
    fn a_block_ends_before_the_next_item_and_its_comment() {
        assert_eq!(block_lines(FILE, at(2, 5)), (2, 6));
        assert_eq!(block_lines(FILE, at(8, 5)), (8, 9));
    }

    #[test]
    fn a_mapping_on_the_line_after_its_dash() {
        let text = "pipelines:\n  -\n    id: x\n    tasks: []\nother: 1\n";
        assert_eq!(block_lines(text, at(3, 5)), (3, 4));
    }
}
