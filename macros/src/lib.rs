//! weir's procedural macros. Thin: every macro hands its tokens to `weir_compiler` and
//! returns what it produced.
