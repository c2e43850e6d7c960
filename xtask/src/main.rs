//! `cargo xtask`: the project's automation, written in Rust (the cargo-xtask pattern).
//!
//! - `cargo xtask ci`: everything `.ci/run` does.
//! - `cargo xtask loom [CRATE...]`: the loom models of the named crates (all by default).
//! - `cargo xtask bench [--smoke|--quick] [--runs N] [SUITE...]`: the side-by-side benchmark
//!   suites (N times: medians over the runs), then `target/xtask-bench/results.json` and
//!   `report.md`.
//!
//! Map: `suites.rs` (the tables of bench suites and loom crates), `bench.rs` (running criterion
//! and collecting its estimates), `report.rs` (results.json, report.md, SVG plots).

mod bench;
mod report;
mod suites;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Failure of a task, printed once at the top level.
type TaskResult = Result<(), String>;

const USAGE: &str = "usage: cargo xtask <task>
tasks:
  ci                               run .ci/run (fmt, clippy, tests, loom, bench smoke)
  loom [CRATE...]                  run the loom models (default: every crate in the loom table)
  bench [--smoke|--quick] [--runs N] [SUITE...]
                                   run benchmark suites (default: all; N times, 1 to 15,
                                   reporting medians over the runs) and write
                                   target/xtask-bench/{results.json,report.md}";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("ci") => run_ci(),
        Some("loom") => run_loom(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task {other:?}\n{USAGE}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's manifest directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The target directory cargo uses for this workspace.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs `command` in the workspace root, echoing it; a non-zero exit is an error.
fn run(command: &mut Command) -> TaskResult {
    command.current_dir(workspace_root());
    eprintln!("xtask: running {command:?}");
    let status = command
        .status()
        .map_err(|error| format!("could not start {command:?}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed with {status}"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run_ci() -> TaskResult {
    run(Command::new("bash").arg(".ci/run"))
}

fn run_loom(crates: &[String]) -> TaskResult {
    let selected = suites::select(suites::LOOM_CRATES, crates, |entry| entry.krate)?;
    for entry in selected {
        let rustflags = format!("--cfg {}", entry.cfg);
        let target = target_dir().join("loom").join(entry.krate);
        run(cargo()
            .args(["test", "--release", "-p", entry.krate, "--test", "loom"])
            .env("RUSTFLAGS", rustflags)
            .env("CARGO_TARGET_DIR", target)
            .env("LOOM_MAX_PREEMPTIONS", entry.max_preemptions.to_string())
            .env_remove("CARGO_ENCODED_RUSTFLAGS"))?;
    }
    Ok(())
}
