//! `make dev`: the whole service on this machine. See the README.

use std::path::PathBuf;
use std::process::ExitCode;

use shared::config::{Env, process_env};

#[tokio::main]
async fn main() -> ExitCode {
    shared::telemetry::init();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let result = match local_stack::DevConfig::from_env(&Env::new(&process_env)) {
        Ok(config) => local_stack::run(root, config).await,
        Err(err) => Err(err.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", shared::error_chain(&err));
            ExitCode::FAILURE
        }
    }
}
