//! stub
/// stub
pub struct StdoutSink;
