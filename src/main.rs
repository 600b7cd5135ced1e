//! `chorus`: see `chorus --help`.

use chorus::cli::{self, Cli, Command};
use clap::Parser;
use std::process::ExitCode;

/// Exit code for a configuration that cannot be used.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig(args) => match args.load(&[]) {
            Ok(_) => {
                println!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => config_error(e),
        },
        Command::Turn(args) => {
            let config = match args.load_for(config::Role::TurnOnly, &[]) {
                Ok(c) => c,
                Err(e) => return config_error(e),
            };
            cli::init_logging(&config);
            run_async(chorus::start_turn(config))
        }
        Command::Token(args) => {
            let config = match args.config.load(&[]) {
                Ok(c) => c,
                Err(e) => return config_error(e),
            };
            match cli::mint(&args, &config) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("chorus: {e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Rooms { api, command } => {
            api_call(async move { chorus::admin_cli::rooms(&api, &command).await })
        }
        Command::Participants { api, command } => {
            api_call(async move { chorus::admin_cli::participants(&api, &command).await })
        }
        Command::Calls { api, command } => {
            api_call(async move { chorus::admin_cli::calls(&api, &command).await })
        }
        Command::Tokens { api, command } => {
            api_call(async move { chorus::admin_cli::tokens(&api, &command).await })
        }
        Command::Webhooks { api, command } => {
            api_call(async move { chorus::admin_cli::webhooks(&api, &command).await })
        }
        Command::Serve(args) => {
            let config = match args.config.load(&[
                ("server.listen", args.listen.as_ref()),
                ("server.data_dir", args.data_dir.as_ref()),
                ("log.format", args.log_format.as_ref()),
                ("log.level", args.log_level.as_ref()),
            ]) {
                Ok(c) => c,
                Err(e) => return config_error(e),
            };
            cli::init_logging(&config);
            run_async(chorus::start(config))
        }
    }
}

fn run_async(future: impl std::future::Future<Output = Result<(), chorus::RunError>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chorus: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(chorus::RunError::Config(e)) => {
            eprintln!("chorus: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("chorus: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a server API command: prints its output, or its error and exits 1.
fn api_call(future: impl std::future::Future<Output = Result<String, String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chorus: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chorus: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config_error(e: config::ConfigError) -> ExitCode {
    eprintln!("chorus: {e}");
    ExitCode::from(EXIT_CONFIG)
}
