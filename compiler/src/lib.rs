//! weir's pipeline compiler.
//!
//! `plan` (always built) holds the plan types and the start-up resolution shared with the
//! runtime. The rest (feature `codegen`) turns a `#[weir::job]` function into code, in this
//! order: parse and lower to a logical graph → validate → chain → generate.

pub mod plan;

#[cfg(feature = "codegen")]
mod chain;
#[cfg(feature = "codegen")]
mod codegen;
#[cfg(feature = "codegen")]
mod diag;
#[cfg(feature = "codegen")]
mod lower;
#[cfg(feature = "codegen")]
mod symbol;
#[cfg(feature = "codegen")]
mod validate;

#[cfg(feature = "codegen")]
pub use codegen_api::*;

#[cfg(feature = "codegen")]
mod codegen_api {
    use crate::{chain, codegen, diag::Diagnostics, lower, plan::JobPlan, validate};
    use proc_macro2::TokenStream;

    /// What compiling a job produced, for tests and tools.
    pub struct Compiled {
        /// The generated code.
        pub tokens: TokenStream,
        /// The plan (when there were no errors).
        pub plan: Option<JobPlan>,
        /// Error messages (empty on success).
        pub errors: Vec<String>,
    }

    /// Compile `#[weir::job(attr)] item` — the whole pass list, in order.
    pub fn compile_job(attr: TokenStream, item: TokenStream) -> Compiled {
        let cx = Diagnostics::new();
        let f: syn::ItemFn = match syn::parse2(item) {
            Ok(f) => f,
            Err(e) => {
                cx.error(
                    e.span(),
                    "`#[weir::job]` goes on a function: `fn pipeline(env: &mut Env) { ... }`",
                );
                let errors = cx.messages();
                return Compiled {
                    tokens: cx.into_tokens(),
                    plan: None,
                    errors,
                };
            }
        };
        let attr = lower::parse_attr(attr, &cx);
        let mut graph = lower::lower(attr, &f, &cx);
        validate::check(&mut graph, &cx);
        if cx.check() {
            let errors = cx.messages();
            let mut tokens = cx.into_tokens();
            tokens.extend(codegen::error_stub(
                &graph.fn_ident,
                &graph.vis,
                graph.emit_main,
            ));
            return Compiled {
                tokens,
                plan: None,
                errors,
            };
        }
        let chains = chain::chain(&graph);
        let plan = codegen::job_plan(&graph, &chains);
        let json = match serde_json::to_string(&plan) {
            Ok(j) => j,
            Err(e) => {
                let msg = format!("weir-compiler bug: cannot serialize the plan: {e}");
                return Compiled {
                    tokens: syn::Error::new(f.sig.ident.span(), &msg).to_compile_error(),
                    plan: None,
                    errors: vec![msg],
                };
            }
        };
        let tokens = codegen::generate(&graph, &chains, &json);
        Compiled {
            tokens,
            plan: Some(plan),
            errors: Vec::new(),
        }
    }

    /// Entry point of `#[weir::record]`: derive what a record type needs (clone, debug,
    /// serde through weir's own serde, so the job crate depends on weir alone).
    pub fn expand_record(attr: TokenStream, item: TokenStream) -> TokenStream {
        if !attr.is_empty() {
            return syn::Error::new_spanned(attr, "`#[weir::record]` takes no arguments")
                .to_compile_error();
        }
        match syn::parse2::<syn::Item>(item.clone()) {
            Ok(syn::Item::Struct(_)) | Ok(syn::Item::Enum(_)) => quote::quote! {
                #[derive(::core::clone::Clone, ::core::fmt::Debug, ::weir::__private::serde::Serialize, ::weir::__private::serde::Deserialize)]
                #[serde(crate = "::weir::__private::serde")]
                #item
            },
            Ok(other) => {
                syn::Error::new_spanned(other, "`#[weir::record]` goes on a struct or an enum")
                    .to_compile_error()
            }
            Err(e) => e.to_compile_error(),
        }
    }

    /// Entry point of `#[weir::job]`.
    pub fn expand_job(attr: TokenStream, item: TokenStream) -> TokenStream {
        compile_job(attr, item).tokens
    }
}
