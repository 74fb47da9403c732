//! Source text and locations inside it.

use serde::{Deserialize, Serialize};

/// A location in `pipelines.yaml`: 1-based line and column (in characters), plus the
/// byte range the located node covers, for underlining.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Span {
    pub line: u32,
    pub col: u32,
    pub offset: usize,
    pub len: usize,
}

impl Span {
    /// A span `len` bytes long starting `delta` bytes after this one's start, on the same line.
    /// Used to point inside a scalar (a cron field, a template expression).
    pub fn narrow(self, delta: usize, len: usize, col_delta: u32) -> Span {
        Span { line: self.line, col: self.col + col_delta, offset: self.offset + delta, len }
    }
}

/// The file being compiled, with its name as the user wrote it.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
    /// The folder the file's relative paths (Python task modules) are read in: the file's
    /// own, when it was read from disk. `None` (a text compiled on its own) leaves files
    /// unchecked.
    pub folder: Option<std::path::PathBuf>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile { name: name.into(), text: text.into(), folder: None }
    }

    /// A file read from `path`: its relative paths are checked in `path`'s folder.
    pub fn from_disk(path: &std::path::Path, text: impl Into<String>) -> Self {
        let folder = path.parent().map(|p| if p.as_os_str().is_empty() { std::path::Path::new(".") } else { p });
        SourceFile {
            name: path.display().to_string(),
            text: text.into(),
            folder: folder.map(std::path::Path::to_path_buf),
        }
    }

    /// The text of the 1-based line `line`, without its line break.
    pub fn line_text(&self, line: u32) -> &str {
        self.text.lines().nth(line.saturating_sub(1) as usize).unwrap_or("")
    }

    /// The byte offset of a 1-based (line, character column) position.
    pub fn offset_of(&self, line: u32, col: u32) -> usize {
        let mut offset = 0;
        for (index, text) in self.text.split_inclusive('\n').enumerate() {
            if index + 1 == line as usize {
                let chars = text.char_indices().nth(col.saturating_sub(1) as usize);
                return offset + chars.map_or(text.len(), |(byte, _)| byte);
            }
            offset += text.len();
        }
        self.text.len()
    }
}
