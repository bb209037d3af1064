//! `pretrain`: inspect, check, load and convert checkpoints; `pretrain demo` tells the seed's
//! story on bundled checkpoints.
//!
//! Exit codes: 0 success; 1 the checkpoint, config or load failed (one line on stderr with
//! the cause chain); 2 bad usage; 3 an expectation not met (`check --expect`, a `pretrain`'s
//! `expect`, or the defaults: a load that loads nothing or leaves a layer half loaded), with
//! the plan's report on stderr. A closed pipe on stdout ends the command quietly with 0.

mod check;
mod cli;
mod convert;
mod demo;
mod embed;
mod export;
mod inspect;
mod load;
mod models;
mod npy;
mod output;
mod predict;
mod serve;

use clap::Parser;

use crate::cli::{Cli, Command};

/// An expectation not met.
pub const EXIT_EXPECT: i32 = 3;

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Check(args) => check::run(args),
        Command::Load(args) => load::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Export(args) => export::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Preprocess(args) => predict::preprocess(args),
        Command::Embed(args) => embed::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if output::is_broken_pipe(&e) {
                std::process::exit(0);
            }
            eprintln!("error: {}", chain(&e));
            let unmet = e.chain().find_map(|c| match c.downcast_ref() {
                Some(burn_pretrain::Error::Unmet { report, .. }) => Some(report),
                _ => None,
            });
            if let Some(report) = unmet {
                eprint!("{report}");
                std::process::exit(EXIT_EXPECT);
            }
            std::process::exit(1);
        }
    }
}

/// The error and its causes on one line, as the chain holds them (no message repeats its
/// cause, so each is said once).
fn chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .with_writer(std::io::stderr)
        .init();
}
