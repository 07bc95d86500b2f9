//! # switchyard
//!
//! The Switchyard service: config loading, sources, routes and actions on top of
//! [`switchyard_core`]'s engine and [`switchyard_prefect`]'s client. The binary is a thin
//! wrapper over [`cli::main`].

/// `println!` for the commands' output: a closed pipe (`switchyard events list | head`) ends
/// the command quietly, where `println!` would panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

pub mod actions;
pub mod admin;
pub mod app;
pub mod cli;
pub mod cloudevents;
pub mod codec;
pub mod config;
pub mod durations;
pub mod follow;
pub mod http;
pub mod import;
pub mod journal;
pub mod metrics;
pub mod observe;
pub mod outcome;
pub mod owned;
pub mod per_key;
pub mod pipeline;
pub mod replay;
pub mod rerun;
pub mod routes;
pub mod secrets;
pub mod simulate;
pub mod sources;
pub mod tap;
pub mod telemetry;
pub mod template;
pub mod topic;
pub mod triggers;
