//! stub
/// stub
pub struct DiscardSink;
