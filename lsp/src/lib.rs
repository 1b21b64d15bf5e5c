//! `ivr lsp`: a language server (LSP 3.17 over standard input and output) for `.flow` files,
//! built on the compiler: the diagnostics of `ivr check` as you type (also those of `ivr.toml`
//! and the prompt catalogs), go to definition and references (nodes, imported flows, prompts
//! into `prompts.toml`, queries and queues into `ivr.toml`), renaming a node, completion,
//! hover, document symbols and formatting (`ivr fmt`).
//!
//! Synchronous (`lsp-server`, rust-analyzer's transport): one thread reads messages, the main
//! loop answers them in order and checks the project after a burst of edits.

mod assist;
mod navigate;
pub mod position;
pub mod project;
pub mod refs;
mod reply;
pub mod server;
pub mod uri;

pub use server::{LspError, run_stdio};
