//! Building blocks the generated vertices use.
