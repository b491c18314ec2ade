//! Errors a job can hit at run time, classified so the launcher knows whom to blame.

use std::fmt;

/// Whose problem an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorDomain {
    /// Bad input, flags or configuration: the user can fix it; restarting will not help.
    User,
    /// An outside system (disk, network, server) failed: a restart may help.
    External,
    /// A bug in weir.
    Internal,
}

/// An error with a message a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct RuntimeError {
    /// Whose problem it is.
    pub domain: ErrorDomain,
    /// One line saying what went wrong and how to fix it.
    pub message: String,
    /// The operator it happened in, if any.
    pub operator: Option<String>,
}

impl RuntimeError {
    /// A user error (bad input, flag or configuration).
    pub fn user(message: impl Into<String>) -> Self {
        RuntimeError {
            domain: ErrorDomain::User,
            message: message.into(),
            operator: None,
        }
    }
    /// An error of an outside system (I/O, network).
    pub fn external(message: impl Into<String>) -> Self {
        RuntimeError {
            domain: ErrorDomain::External,
            message: message.into(),
            operator: None,
        }
    }
    /// A bug in weir.
    pub fn internal(message: impl Into<String>) -> Self {
        RuntimeError {
            domain: ErrorDomain::Internal,
            message: message.into(),
            operator: None,
        }
    }
    /// Attach the operator the error happened in.
    pub fn in_operator(mut self, name: impl Into<String>) -> Self {
        if self.operator.is_none() {
            self.operator = Some(name.into());
        }
        self
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.operator {
            Some(op) => write!(f, "operator `{op}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for RuntimeError {}

/// Result with a [`RuntimeError`].
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
