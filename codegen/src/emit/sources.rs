//! Where each pipeline was written: its block of the pipelines file, the Rust paths of its
//! task bodies and the compiler's warnings inside the block, as the `PipelineSource`
//! table the runtime serves (`dagSources`, `dagWarnings`, the pipeline page).

use crate::diag::Diagnostic;
use crate::model::{Pipeline, TaskKind};
use crate::source::{SourceFile, Span};
use proc_macro2::TokenStream;
use quote::quote;

/// The lines (1-based, inclusive) of the block of the sequence item whose `id` key is at
/// `id`: from the item's `-` (on the id's line, or above it when other keys come first) to
/// the last line indented deeper than that `-`, without trailing blank and comment lines.
pub fn block_lines(text: &str, id: Span) -> (u32, u32) {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let at = (id.line.max(1) as usize - 1).min(lines.len().saturating_sub(1));
    let head = lines.get(at).copied().unwrap_or_default();
    // The item's `-`: on the id's line (`- id: x`), or the nearest line above that starts
    // with one, less indented than the id's key.
    let (mut first, mut dash) = (at, indent(head).saturating_sub(2));
    if head.trim_start().starts_with('-') {
        dash = indent(head);
    } else {
        for i in (0..at).rev() {
            let line = lines[i];
            if line.trim().is_empty() || indent(line) >= indent(head) {
                continue;
            }
            if line.trim_start().starts_with('-') {
                (first, dash) = (i, indent(line));
            }
            break;
        }
    }
    let mut last = at;
    for (i, line) in lines.iter().enumerate().skip(at + 1) {
        if line.trim().is_empty() {
            continue;
        }
        if indent(line) <= dash {
            break;
        }
        last = i;
    }
    // Comments directly after the block are the next item's.
    while last > at && lines[last].trim_start().starts_with('#') {
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
            let (first, last) = block_lines(&file.text, p.id.span);
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
        assert_eq!(block_lines(FILE, at(2, 9)), (2, 6));
        assert_eq!(block_lines(FILE, at(8, 9)), (8, 9));
    }

    #[test]
    fn a_block_starts_at_its_dash_when_the_id_comes_later() {
        let text = "pipelines:\n  - description: d\n    id: x\n    tasks: []\nother: 1\n";
        assert_eq!(block_lines(text, at(3, 9)), (2, 4));
        let text = "pipelines:\n  -\n    id: x\n    tasks: []\nother: 1\n";
        assert_eq!(block_lines(text, at(3, 9)), (2, 4));
    }
}
