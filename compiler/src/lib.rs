//! The `ivr` compiler: checks flows against the configuration (`ivr.toml`: data catalog,
//! queues, calendars, routes) and the prompt catalogs, reports every problem with its place,
//! and compiles each flow into an executable [`program::Program`] for the call engine.
//!
//! Data flows one way: [`config`] and [`catalog`] are read, flows are parsed by `ivr-dsl`,
//! [`lower`] resolves and types them into programs, [`analysis`] runs the graph-wide checks,
//! and [`project`] ties a run together. [`graph`] renders a program for people.

pub mod analysis;
pub mod audio_texts;
pub mod catalog;
pub mod cluster_config;
pub mod config;
mod edges;
pub mod flow_svg;
pub mod graph;
pub mod layout;
pub mod lower;
pub mod outbound_config;
pub mod program;
pub mod project;
pub mod recording;
pub mod suggest;
pub mod supervisor_config;

pub use project::{
    CheckOptions, Checked, FlowSource, LoadError, check, compile_flow, finish, load_config,
    parse_source,
};
