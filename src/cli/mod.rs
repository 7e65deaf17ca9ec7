//! The command-line tool's parts that are more than a few lines: the load
//! generator. Only `main.rs` uses them; the library knows nothing of them.

pub(crate) mod load;
