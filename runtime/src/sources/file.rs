//! File source (stub).
/// Reads files.
pub struct FileSource;
/// File formats.
pub enum FileFormat {}
