//! stub
/// stub
pub struct FileSink;
