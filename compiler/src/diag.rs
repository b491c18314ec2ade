//! Diagnostics as values: every pass pushes spanned errors and goes on, so the user sees all
//! of them at once.

use proc_macro2::{Span, TokenStream};
use std::cell::RefCell;
use std::fmt::Display;

/// A push-only list of spanned errors that must be checked before it is dropped.
#[derive(Default)]
pub struct Diagnostics {
    errors: RefCell<Vec<syn::Error>>,
    checked: std::cell::Cell<bool>,
}

impl Diagnostics {
    /// A new, empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record an error at `span`.
    pub fn error(&self, span: Span, msg: impl Display) {
        self.errors.borrow_mut().push(syn::Error::new(span, msg));
    }

    /// Whether any error was recorded.
    pub fn has_errors(&self) -> bool {
        !self.errors.borrow().is_empty()
    }

    /// The messages so far (for tests).
    pub fn messages(&self) -> Vec<String> {
        self.errors.borrow().iter().map(|e| e.to_string()).collect()
    }

    /// All errors as `compile_error!` invocations; marks the list checked.
    pub fn into_tokens(self) -> TokenStream {
        self.checked.set(true);
        let errors = std::mem::take(&mut *self.errors.borrow_mut());
        errors.into_iter().map(|e| e.to_compile_error()).collect()
    }

    /// Mark the list as looked at.
    pub fn check(&self) -> bool {
        self.checked.set(true);
        self.has_errors()
    }
}

impl Drop for Diagnostics {
    fn drop(&mut self) {
        if !std::thread::panicking() && !self.checked.get() && !self.errors.borrow().is_empty() {
            panic!("weir-compiler bug: diagnostics dropped without being checked");
        }
    }
}

/// The closest candidate within edit distance 2, for "did you mean".
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2.max(word.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        let ops = ["map", "filter", "flat_map", "key_by", "reduce", "sink"];
        assert_eq!(did_you_mean("mapp", &ops), Some("map"));
        assert_eq!(did_you_mean("fliter", &ops), Some("filter"));
        assert_eq!(did_you_mean("keyby", &ops), Some("key_by"));
        assert_eq!(did_you_mean("window", &ops), None);
    }
}
