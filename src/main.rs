//! The `payctl` binary: parse the command line, set up logging, dispatch.

use payctl::cli::{Cli, Command};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse_args();
    let default_filter = match cli.verbose {
        0 => "warn,payctl=info",
        1 => "info,payctl=debug",
        _ => "debug,payctl=trace",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org).
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let live = matches!(cli.command, Command::Up { .. } | Command::Down { .. });
    if live && !cli.no_progress && std::io::stderr().is_terminal() {
        payctl::progress::enable();
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_target(false)
        .with_writer(|| payctl::progress::LogWriter)
        .init();

    match dispatch(&cli).await {
        Ok(None) => std::process::ExitCode::SUCCESS,
        Ok(Some(code)) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                payctl::error::Error::RunInterrupted { .. } => {
                    std::process::ExitCode::from(payctl::interrupt::EXIT_STATUS)
                }
                _ => std::process::ExitCode::FAILURE,
            }
        }
    }
}

/// Runs the command; `Some(code)` for a success with another exit status than 0.
async fn dispatch(cli: &Cli) -> payctl::error::Result<Option<u8>> {
    match &cli.command {
        Command::Up { common, packages } => {
            let options = payctl::engine::Options {
                packages: packages.clone(),
                ..Default::default()
            };
            payctl::commands::up(common, options).await
        }
        Command::Plan {
            common,
            packages,
            json,
        } => {
            let options = payctl::engine::Options {
                packages: packages.clone(),
                ..Default::default()
            };
            match payctl::commands::plan(common, options, *json).await {
                // Exit status 2: `up` would change something (CI can gate on it).
                Ok(true) => return Ok(Some(2)),
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Command::Down {
            common,
            yes,
            purge,
            skip_final_snapshot,
        } => {
            let options = payctl::engine::Options {
                purge: *purge,
                skip_final_snapshot: *skip_final_snapshot,
                ..Default::default()
            };
            payctl::commands::down(common, *yes, options).await
        }
        Command::Outputs {
            common,
            json,
            show_api_key,
        } => payctl::commands::outputs(common, *json, *show_api_key).await,
        Command::ForceUnlock { common, lock_id } => {
            payctl::commands::force_unlock(common, lock_id).await
        }
        Command::State(payctl::cli::StateCommand::Pull(t)) => {
            payctl::commands::state_transfer(t, false).await
        }
        Command::State(payctl::cli::StateCommand::Push(t)) => {
            payctl::commands::state_transfer(t, true).await
        }
        Command::Verify { common, json } => payctl::commands::verify(common, *json).await,
        Command::Redrive { common } => payctl::commands::redrive(common).await,
        Command::Rollback { common, function } => {
            payctl::commands::rollback(common, function.as_deref()).await
        }
        Command::Local(payctl::cli::LocalCommand::StartApi {
            common,
            port,
            database_url,
            bin_dir,
            poll_event_sources,
        }) => {
            let options = payctl::local::Options {
                port: *port,
                database_url: database_url.clone(),
                bin_dir: bin_dir.clone(),
                poll_event_sources: *poll_event_sources,
            };
            payctl::local::start_api(common, options).await
        }
        Command::Completions { shell } => {
            payctl::commands::completions(*shell);
            Ok(())
        }
    }
    .map(|()| None)
}
