//! Helpers for tests that run job binaries.
