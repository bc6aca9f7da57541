//! Access policies written in rhai: compiled once, run sandboxed, and
//! failing closed.
