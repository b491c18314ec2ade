//! weir's pipeline compiler.
//!
//! `plan` (always built) holds the plan types and the start-up resolution shared with the
//! runtime. The rest (feature `codegen`) turns a `#[weir::job]` function into code:
//! parse → validate → logical graph → chain → codegen.

pub mod plan;
