//! `cargo xtask bench`: run the criterion suites, then collect criterion's own estimates.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use serde_json::Value;

use crate::report::{self, Measurement, Row};
use crate::suites::{self, SUITES, Suite};
use crate::{TaskResult, cargo, target_dir};

/// How long criterion measures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Each bench once, nothing timed (`cargo test --benches`).
    Smoke,
    /// Short warm-up and measurement: the whole run stays under about five minutes.
    Quick,
    /// Criterion's defaults.
    Full,
}

/// Most `--runs`: each run of a quick suite takes minutes.
const MAX_RUNS: usize = 15;

pub fn run(args: &[String]) -> TaskResult {
    let mut mode = Mode::Full;
    let mut names = Vec::new();
    let mut runs = 1;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => mode = Mode::Smoke,
            "--quick" => mode = Mode::Quick,
            "--runs" => {
                let value = args.next().map(String::as_str).unwrap_or_default();
                runs = value
                    .parse()
                    .ok()
                    .filter(|runs| (1..=MAX_RUNS).contains(runs))
                    .ok_or_else(|| {
                        format!("--runs takes a number from 1 to {MAX_RUNS}, not {value:?}")
                    })?;
            }
            flag if flag.starts_with('-') => return Err(format!("unknown bench flag {flag:?}")),
            name => names.push(name.to_owned()),
        }
    }
    let selected = suites::select(SUITES, &names, |suite| suite.name)?;
    let mut bench_targets = Vec::new();
    for suite in &selected {
        bench_targets.extend(["--bench", suite.name]);
    }

    if mode == Mode::Smoke {
        return crate::run(
            cargo()
                .args(["test", "-p", "eventstore-benches"])
                .args(&bench_targets),
        );
    }

    let mut command = cargo();
    command
        .args(["bench", "-p", "eventstore-benches"])
        .args(&bench_targets)
        .arg("--");
    if mode == Mode::Quick {
        command.args([
            "--warm-up-time",
            "0.5",
            "--measurement-time",
            "1.5",
            "--sample-size",
            "10",
        ]);
    }
    // Each run measures every contender of a case side by side; with several runs, a host
    // that changes speed between one contender and the next skews one run, not the median.
    // Where criterion writes its estimates: CRITERION_HOME if set (a relative one from the
    // bench binaries' working directory, the benches package), else target/criterion.
    let criterion_dir = std::env::var_os("CRITERION_HOME")
        .map(|home| crate::workspace_root().join("benches").join(home))
        .unwrap_or_else(|| target_dir().join("criterion"));
    let mut per_run = Vec::with_capacity(runs);
    for run in 1..=runs {
        if runs > 1 {
            eprintln!("xtask: bench run {run} of {runs}");
        }
        let started = SystemTime::now();
        crate::run(&mut command)?;
        let measurements = collect(&criterion_dir, started)?;
        per_run.push(rows_for(&selected, &measurements)?);
    }
    let rows = report::median_rows(&per_run)?;
    let out_dir = target_dir().join("xtask-bench");
    report::write(&out_dir, &selected, &rows)?;
    report::print_summary(&rows);
    eprintln!("xtask: wrote {}", out_dir.join("results.json").display());
    Ok(())
}

/// Every measurement criterion wrote since `since` (stale results of earlier runs are ignored).
fn collect(criterion_dir: &Path, since: SystemTime) -> Result<Vec<Measurement>, String> {
    let mut found = Vec::new();
    let groups = fs::read_dir(criterion_dir).map_err(|error| {
        format!(
            "no criterion output in {}: {error}",
            criterion_dir.display()
        )
    })?;
    for group in groups.flatten() {
        let Ok(functions) = fs::read_dir(group.path()) else {
            continue;
        };
        for function in functions.flatten() {
            let new = function.path().join("new");
            let estimates_path = new.join("estimates.json");
            let fresh = fs::metadata(&estimates_path)
                .and_then(|meta| meta.modified())
                .is_ok_and(|modified| modified >= since);
            if fresh {
                found.push(read_measurement(
                    &new.join("benchmark.json"),
                    &estimates_path,
                )?);
            }
        }
    }
    Ok(found)
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))
}

fn read_measurement(benchmark_path: &Path, estimates_path: &Path) -> Result<Measurement, String> {
    let benchmark = read_json(benchmark_path)?;
    let estimates = read_json(estimates_path)?;
    let field = |value: &Value, key: &str| -> Result<String, String> {
        value[key]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{} has no {key:?}", benchmark_path.display()))
    };
    let group = field(&benchmark, "group_id")?;
    let function = field(&benchmark, "function_id")?;
    let median_ns = estimates["median"]["point_estimate"]
        .as_f64()
        .filter(|ns| *ns > 0.0)
        .ok_or_else(|| format!("{} has no positive median", estimates_path.display()))?;
    let throughput = &benchmark["throughput"];
    let (unit, value) = if let Some(elements) = throughput["Elements"].as_f64() {
        ("elements/s", elements * 1e9 / median_ns)
    } else if let Some(bytes) = throughput["Bytes"].as_f64() {
        ("bytes/s", bytes * 1e9 / median_ns)
    } else {
        ("ns", median_ns)
    };
    Ok(Measurement {
        group,
        function,
        unit,
        value,
    })
}

/// One row per (case, peer), or one row with no peer for a case that has none.
fn rows_for(selected: &[&Suite], measurements: &[Measurement]) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for suite in selected {
        let prefix = format!("{}/", suite.name);
        let mut cases: Vec<&str> = measurements
            .iter()
            .filter_map(|m| m.group.strip_prefix(&prefix))
            .collect();
        cases.sort_unstable();
        cases.dedup();
        if cases.is_empty() {
            return Err(format!(
                "suite `{}` left no criterion estimates ({prefix}*) written since the run \
                 started",
                suite.name
            ));
        }
        for case in cases {
            let group = format!("{prefix}{case}");
            let in_case: Vec<&Measurement> =
                measurements.iter().filter(|m| m.group == group).collect();
            let ours = in_case
                .iter()
                .find(|m| m.function == "ours")
                .ok_or_else(|| format!("case {group} has no `ours` measurement"))?;
            let mut peers: Vec<&&Measurement> =
                in_case.iter().filter(|m| m.function != "ours").collect();
            peers.sort_by(|a, b| a.function.cmp(&b.function));
            if peers.is_empty() {
                rows.push(Row::new(suite.name, case, ours, None)?);
            }
            for peer in peers {
                rows.push(Row::new(suite.name, case, ours, Some(peer))?);
            }
        }
    }
    Ok(rows)
}
