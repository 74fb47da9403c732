//! The outputs a non-Rust task produces without declaring them: the compiler type-checks
//! templates and downstream inputs against these, the executors write them.

use crate::spec::ValueType;

pub const SHELL_STDOUT: &str = "stdout";
pub const SHELL_EXIT_CODE: &str = "exit_code";
pub const HTTP_STATUS: &str = "status";
pub const HTTP_BODY: &str = "body";
pub const SQL_ROWS_AFFECTED: &str = "rows_affected";
pub const SQL_ROWS: &str = "rows";
/// A branch task's choice: the ids of the `branch:` targets that run (a `list<string>`).
pub const BRANCH: &str = "branch";

/// A shell task's last stdout line and its exit code.
pub const SHELL: [(&str, ValueType); 2] = [(SHELL_STDOUT, ValueType::String), (SHELL_EXIT_CODE, ValueType::Int)];
/// An http task's response status and body (JSON when it parses, else a string).
pub const HTTP: [(&str, ValueType); 2] = [(HTTP_STATUS, ValueType::Int), (HTTP_BODY, ValueType::Json)];
/// An sql task's affected-row count and returned rows.
pub const SQL: [(&str, ValueType); 2] = [(SQL_ROWS_AFFECTED, ValueType::Int), (SQL_ROWS, ValueType::Json)];
