//! A try's log within bounds: the cap on what one try may store, the line that says where
//! a log was cut, and the tokens that page through a log. Pure decisions only: the store
//! counts and writes, the worker streams, the web server reads pages.
//!
//! A command that prints without end must not fill the metadata database, nor a page that
//! shows its log the browser: a try keeps its first lines up to the cap, then one line
//! saying how much was not kept, and readers get the log a page at a time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;

/// The most of a try's log that is kept: its first lines, until either bound is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// `SLUICE_TASK_LOG_MAX_LINES`.
    pub max_lines: u64,
    /// `SLUICE_TASK_LOG_MAX_BYTES`: the bytes of the lines' text (UTF-8, newlines not counted).
    pub max_bytes: u64,
}

impl Default for LogLimits {
    /// 100,000 lines or 10 MiB, whichever comes first.
    fn default() -> LogLimits {
        LogLimits { max_lines: 100_000, max_bytes: 10 * 1024 * 1024 }
    }
}

/// How much of a try's log is stored already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogUsage {
    pub lines: u64,
    pub bytes: u64,
}

impl LogLimits {
    /// How many of the lines of `sizes` (their lengths in bytes, in order) fit after `used`.
    /// The log is cut at the first line that does not fit: a shorter line after it is not
    /// kept either, so what is stored is always a prefix of what was written.
    pub fn admit(&self, used: LogUsage, sizes: impl IntoIterator<Item = u64>) -> usize {
        let (mut lines, mut bytes) = (used.lines, used.bytes);
        let mut admitted = 0;
        for size in sizes {
            if lines >= self.max_lines || bytes.saturating_add(size) > self.max_bytes {
                break;
            }
            lines += 1;
            bytes += size;
            admitted += 1;
        }
        admitted
    }

    /// The line stored where a log was cut. `dropped` is how many lines were not kept:
    /// unknown while the try runs, counted when it ends.
    pub fn cut_notice(&self, dropped: Option<u64>) -> String {
        let what = match dropped {
            None => "later lines are not kept".to_string(),
            Some(1) => "1 more line not kept".to_string(),
            Some(n) => format!("{n} more lines not kept"),
        };
        format!("[log cut at {} lines / {}: {what}]", self.max_lines, human_bytes(self.max_bytes))
    }
}

/// `10 MiB`, `64 KiB` or `1000 bytes`: whole units only, so the figure is exact.
pub fn human_bytes(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    match bytes {
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

/// How much one page of a log holds at most: a reader never gets a whole 10 MiB log in
/// one answer unless it asks for it (`full_content`, streamed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize {
    pub lines: i64,
    /// A page holds at least one line, however long.
    pub bytes: i64,
}

impl PageSize {
    /// 1,000 lines or 1 MiB.
    pub const DEFAULT: PageSize = PageSize { lines: 1_000, bytes: 1024 * 1024 };
}

/// Where the next page of a try's log starts: after the stored line `after` (0: from the
/// start). Handed to clients as an opaque string (the API's `continuation_token`), bound to
/// the task instance and try it came from, so a token used on another log is refused
/// rather than silently read at a position that means nothing there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogToken {
    pub ti_id: i64,
    pub try_number: i64,
    pub after: i64,
}

/// A continuation token that cannot be read, or belongs to another log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadToken(pub &'static str);

impl fmt::Display for BadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid continuation token: {}", self.0)
    }
}

impl std::error::Error for BadToken {}

impl LogToken {
    /// Base64url (no padding) of a small JSON object; `log_pos` is Airflow's name for the
    /// position in its own tokens.
    pub fn encode(&self) -> String {
        let json = serde_json::json!({ "ti": self.ti_id, "try": self.try_number, "log_pos": self.after });
        URL_SAFE_NO_PAD.encode(json.to_string())
    }

    /// Reads a token and checks that it belongs to the log of `ti_id`, try `try_number`.
    pub fn decode(token: &str, ti_id: i64, try_number: i64) -> Result<LogToken, BadToken> {
        let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| BadToken("not a token this server issued"))?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| BadToken("not a token this server issued"))?;
        let field = |name: &str| value.get(name).and_then(serde_json::Value::as_i64);
        let (Some(ti), Some(tried), Some(after)) = (field("ti"), field("try"), field("log_pos")) else {
            return Err(BadToken("not a token this server issued"));
        };
        if after < 0 {
            return Err(BadToken("its position is negative"));
        }
        if (ti, tried) != (ti_id, try_number) {
            return Err(BadToken("it belongs to the log of another task instance or try"));
        }
        Ok(LogToken { ti_id, try_number, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: LogLimits = LogLimits { max_lines: 3, max_bytes: 10 };

    #[test]
    fn admits_lines_until_either_bound() {
        assert_eq!(SMALL.admit(LogUsage::default(), [1, 1, 1, 1]), 3, "the line bound");
        assert_eq!(SMALL.admit(LogUsage::default(), [4, 4, 4]), 2, "the byte bound");
        assert_eq!(SMALL.admit(LogUsage::default(), [4, 4, 2]), 3, "exactly at both bounds");
        assert_eq!(SMALL.admit(LogUsage { lines: 2, bytes: 2 }, [1, 1]), 1, "counts what is stored");
        assert_eq!(SMALL.admit(LogUsage { lines: 3, bytes: 3 }, [0]), 0, "full");
        assert_eq!(SMALL.admit(LogUsage::default(), [11, 1]), 0, "cut at the first line that does not fit");
        assert_eq!(SMALL.admit(LogUsage::default(), [9, 5, 1]), 1, "a prefix: nothing after the cut");
        assert_eq!(SMALL.admit(LogUsage::default(), []), 0);
    }

    #[test]
    fn the_cut_notice_says_the_cap_and_what_was_dropped() {
        let limits = LogLimits::default();
        assert_eq!(limits.cut_notice(None), "[log cut at 100000 lines / 10 MiB: later lines are not kept]");
        assert_eq!(limits.cut_notice(Some(1)), "[log cut at 100000 lines / 10 MiB: 1 more line not kept]");
        assert_eq!(
            limits.cut_notice(Some(1_900_000)),
            "[log cut at 100000 lines / 10 MiB: 1900000 more lines not kept]"
        );
        assert_eq!(SMALL.cut_notice(Some(2)), "[log cut at 3 lines / 10 bytes: 2 more lines not kept]");
        assert_eq!(human_bytes(64 * 1024), "64 KiB");
        assert_eq!(human_bytes(1500), "1500 bytes");
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_log() {
        let token = LogToken { ti_id: 7, try_number: 2, after: 12_345 };
        let text = token.encode();
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "URL-safe: {text}");
        assert_eq!(LogToken::decode(&text, 7, 2), Ok(token));
        assert!(LogToken::decode(&text, 7, 1).is_err(), "another try");
        assert!(LogToken::decode(&text, 8, 2).is_err(), "another task instance");
        for bad in ["", "garbage!", "e30", "eyJ0aSI6N30", &URL_SAFE_NO_PAD.encode(r#"{"ti":7,"try":2,"log_pos":-1}"#)] {
            assert!(LogToken::decode(bad, 7, 2).is_err(), "{bad:?}");
        }
    }
}
