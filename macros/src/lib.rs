//! weir's procedural macros. Thin: every macro hands its tokens to `weir_compiler` and
//! returns what it produced.

use proc_macro::TokenStream;

/// Compile a pipeline function into a weir job: its dataflow, its plan and `fn main`.
///
/// ```text
/// #[weir::job(name = "wordcount", parallelism = 2)]
/// fn pipeline(env: &mut Env) {
///     env.source(FileSource::text_lines(env.arg("input")))
///         .flat_map(|line| line.split_whitespace().map(|w| (w.to_lowercase(), 1u64)).collect::<Vec<_>>())
///         .key_by(|(word, _)| word.clone())
///         .reduce(|(w, a), (_, b)| (w, a + b))
///         .sink(FileSink::json_lines(env.arg("output")));
/// }
/// ```
#[proc_macro_attribute]
pub fn job(attr: TokenStream, item: TokenStream) -> TokenStream {
    weir_compiler::expand_job(attr.into(), item.into()).into()
}

/// Make a struct or enum usable as a record: derives `Clone`, `Debug`, `Serialize` and
/// `Deserialize` (through weir's serde, so the job crate needs no serde dependency).
///
/// ```text
/// #[weir::record]
/// struct Order { customer_id: u64, amount: f64 }
/// ```
#[proc_macro_attribute]
pub fn record(attr: TokenStream, item: TokenStream) -> TokenStream {
    weir_compiler::expand_record(attr.into(), item.into()).into()
}
