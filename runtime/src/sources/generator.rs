//! Generator source (stub).
/// Generates records.
pub struct Generator;
