//! `sluice-codegen`: check, generate and plan from `pipelines.yaml`.
//!
//! Exit codes: `check`/`generate` 0 clean, 1 errors (or warnings with
//! `--deny-warnings`, or stale files with `generate --check`), 2 usage.
//! `plan` follows `terraform plan -detailed-exitcode`: 0 no change, 2 changes, 1 error.

use clap::{Parser, Subcommand, ValueEnum};
use sluice_codegen::build::{generated_files, read_source, report, stale_files, write_if_changed};
use sluice_codegen::diag::Diagnostic;
use sluice_codegen::source::SourceFile;
use sluice_codegen::{Compiled, compile, emit, plan};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "sluice-codegen",
    version,
    about = "The Sluice pipeline compiler: check, generate and plan from pipelines.yaml"
)]
struct Cli {
    /// The pipelines file.
    #[arg(long, short, global = true, default_value = "pipelines.yaml")]
    file: PathBuf,
    /// How to print diagnostics.
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Treat warnings as errors.
    #[arg(long, global = true)]
    deny_warnings: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the file and print every diagnostic.
    Check,
    /// Write the deploy files and the lock into the output directory.
    Generate {
        /// Where to write.
        #[arg(long, default_value = "generated")]
        out: PathBuf,
        /// Write nothing; fail if any file is missing or out of date.
        #[arg(long)]
        check: bool,
    },
    /// Show what changes compared with the committed lock file.
    Plan {
        /// The lock file describing what is deployed.
        #[arg(long, default_value = "generated/pipelines.lock.json")]
        lock: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = match read_source(&cli.file) {
        Ok(file) => file,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let Some(compiled) = checked(&cli, &file) else { return ExitCode::FAILURE };
    match &cli.command {
        Command::Check => {
            if compiled.warnings.is_empty() && cli.format == Format::Human {
                println!("{}: ok, {} pipeline(s)", file.name, compiled.config.pipelines.len());
            }
            ExitCode::SUCCESS
        }
        Command::Generate { out, check } => generate(&compiled, &file, out, *check),
        Command::Plan { lock } => plan_command(&compiled, &file, lock),
    }
}

/// Compiles and prints diagnostics; `None` when the build must stop.
fn checked(cli: &Cli, file: &SourceFile) -> Option<Compiled> {
    let color = std::io::stderr().is_terminal();
    let json = cli.format == Format::Json;
    let print = |diagnostics: &[Diagnostic]| {
        let text = report(file, diagnostics, json, color && !json);
        if json { print!("{text}") } else { eprint!("{text}") }
    };
    match compile(file) {
        Ok(compiled) => {
            if !compiled.warnings.is_empty() || json {
                print(&compiled.warnings);
            }
            if cli.deny_warnings && !compiled.warnings.is_empty() {
                eprintln!("error: warnings are denied (--deny-warnings)");
                return None;
            }
            Some(compiled)
        }
        Err(diagnostics) => {
            print(&diagnostics);
            None
        }
    }
}

fn generate(compiled: &Compiled, file: &SourceFile, out: &Path, check: bool) -> ExitCode {
    let files = match generated_files(compiled, &file.name) {
        Ok(files) => files,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    if check {
        let stale = stale_files(out, &files);
        if stale.is_empty() {
            println!("{}: {} files up to date", out.display(), files.len());
            return ExitCode::SUCCESS;
        }
        eprintln!("error: {} is stale: {}", out.display(), stale.join(", "));
        eprintln!("run `cargo make generate` and commit the result");
        return ExitCode::FAILURE;
    }
    for f in &files {
        match write_if_changed(out, f) {
            Ok(true) => println!("wrote {}", out.join(&f.path).display()),
            Ok(false) => {}
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", out.join(&f.path).display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn plan_command(compiled: &Compiled, file: &SourceFile, lock_path: &Path) -> ExitCode {
    let old = match std::fs::read_to_string(lock_path) {
        Ok(text) => match emit::lock::parse(&text) {
            Ok(lock) => lock.config,
            Err(e) => {
                eprintln!("error: {} is not a lock file this version reads: {e}", lock_path.display());
                eprintln!("regenerate it from the deployed commit with `sluice-codegen generate`");
                return ExitCode::FAILURE;
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut empty = compiled.config.clone();
            empty.pipelines.clear();
            empty.connections.clear();
            empty.pools.clear();
            empty
        }
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", lock_path.display());
            return ExitCode::FAILURE;
        }
    };
    let plan = plan::plan(&old, &compiled.config);
    print!("{}", plan.render(&file.name, &lock_path.display().to_string()));
    if plan.has_changes() { ExitCode::from(2) } else { ExitCode::SUCCESS }
}
