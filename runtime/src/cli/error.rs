//! The one error type of the command line. Every variant prints as one sentence that says
//! what failed, where, and how to fix it; `sluice` prints it after `error: ` and exits 1
//! (usage errors are clap's, exit 2, and never reach this type).
//!
//! The runtime's own errors already read that way, so they convert with `?`. Errors of
//! the standard library and other crates ("No such file or directory") do not: they have
//! no `From` impl here, only [`Context::context`], so that a call site cannot forget to
//! say which file or URL it was working on.

use crate::broker::BrokerError;
use crate::connection::ConnectionError;
use crate::scheduler::TriggerError;
use crate::store::StoreError;
use crate::timetable::TimetableError;
use std::error::Error;
use std::fmt;

#[derive(Debug)]
pub enum CliError {
    /// The metadata database failed, or refused the request (a name not found, a duplicate).
    Store(StoreError),
    /// A connection's fields, URI or import file cannot be used.
    Connection(ConnectionError),
    /// A pipeline's schedule cannot be read.
    Schedule(TimetableError),
    /// A run could not be created: its params, run id or the store refused it.
    Trigger(TriggerError),
    /// The Redis broker did not answer.
    Broker(BrokerError),
    /// An error of the standard library or another crate (I/O, JSON, HTTP), with what
    /// the command was `doing` ("cannot read conns.json") and, when known, the `fix`.
    Foreign { doing: String, source: Box<dyn Error + Send + Sync>, fix: Option<&'static str> },
    /// The arguments, or what a file they name holds, are wrong; the sentence says which
    /// and how to give them.
    Input(String),
    /// A failure with no error type of its own (the runtime modules that report theirs
    /// as text, an unhealthy service); the sentence says what failed.
    Failure(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Store(e) => e.fmt(f),
            CliError::Connection(e) => e.fmt(f),
            CliError::Schedule(e) => e.fmt(f),
            CliError::Trigger(e) => e.fmt(f),
            CliError::Broker(e) => e.fmt(f),
            CliError::Foreign { doing, source, fix: None } => write!(f, "{doing}: {source}"),
            CliError::Foreign { doing, source, fix: Some(fix) } => write!(f, "{doing}: {source}; {fix}"),
            CliError::Input(message) | CliError::Failure(message) => f.write_str(message),
        }
    }
}

impl Error for CliError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            CliError::Store(e) => Some(e),
            CliError::Connection(e) => Some(e),
            CliError::Trigger(e) => Some(e),
            CliError::Broker(e) => Some(e),
            CliError::Foreign { source, .. } => Some(source.as_ref()),
            CliError::Schedule(_) | CliError::Input(_) | CliError::Failure(_) => None,
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
        CliError::Store(e)
    }
}

impl From<ConnectionError> for CliError {
    fn from(e: ConnectionError) -> CliError {
        CliError::Connection(e)
    }
}

impl From<TimetableError> for CliError {
    fn from(e: TimetableError) -> CliError {
        CliError::Schedule(e)
    }
}

impl From<TriggerError> for CliError {
    fn from(e: TriggerError) -> CliError {
        CliError::Trigger(e)
    }
}

impl From<BrokerError> for CliError {
    fn from(e: BrokerError) -> CliError {
        CliError::Broker(e)
    }
}

/// The modules that report failures as text (settings, keys, the distributed services,
/// run ids) already write one sentence; it is passed on as it is.
impl From<String> for CliError {
    fn from(message: String) -> CliError {
        CliError::Failure(message)
    }
}

/// Says what a command was doing when a foreign error (I/O, JSON, HTTP) happened.
pub trait Context<T> {
    /// The error as "`doing`: reason"; `doing` is only formatted on failure.
    fn context<D: fmt::Display>(self, doing: impl FnOnce() -> D) -> Result<T, CliError>;
}

impl<T, E: Error + Send + Sync + 'static> Context<T> for Result<T, E> {
    fn context<D: fmt::Display>(self, doing: impl FnOnce() -> D) -> Result<T, CliError> {
        self.map_err(|source| CliError::Foreign { doing: doing().to_string(), source: Box::new(source), fix: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_goes_before_the_reason() {
        let read: Result<String, std::io::Error> = Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        let message = read.context(|| "cannot read conns.json").err().map(|e| e.to_string());
        assert_eq!(message.as_deref(), Some("cannot read conns.json: entity not found"));
    }

    #[test]
    fn a_fix_goes_after_the_reason() {
        let e = CliError::Foreign {
            doing: "cannot create /data".into(),
            source: Box::new(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
            fix: Some("set SLUICE_HOME to a writable folder"),
        };
        assert_eq!(e.to_string(), "cannot create /data: permission denied; set SLUICE_HOME to a writable folder");
    }

    #[test]
    fn runtime_errors_keep_their_sentence() {
        let e: CliError = StoreError::NotFound("connection `cache`".into()).into();
        assert_eq!(e.to_string(), "connection `cache` not found");
        let e: CliError = String::from("queue `x` is not declared").into();
        assert_eq!(e.to_string(), "queue `x` is not declared");
    }
}
