//! The outputs of `cargo xtask bench`: `results.json` (the stable contract), `report.md` and one
//! SVG plot per suite.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde_json::json;

use crate::suites::Suite;

/// One criterion measurement, reduced to the unit the report uses.
#[derive(Debug)]
pub struct Measurement {
    /// Criterion group id: `<suite>/<case>`.
    pub group: String,
    /// Criterion function id: `ours` or the peer's name.
    pub function: String,
    /// `elements/s` or `bytes/s` (higher is better) or `ns` (lower is better).
    pub unit: &'static str,
    /// The median, in `unit`.
    pub value: f64,
}

/// One line of `results.json`.
#[derive(Debug)]
pub struct Row {
    pub suite: String,
    pub case: String,
    pub unit: &'static str,
    pub ours: f64,
    pub peer: Option<String>,
    pub peer_value: Option<f64>,
    /// > 1 means we are better, whatever the unit's direction.
    pub ratio: Option<f64>,
    /// Runs this row is the median of (`--runs`), and the lowest and highest ratio among them.
    pub runs: usize,
    pub ratio_range: Option<(f64, f64)>,
}

impl Row {
    pub fn new(
        suite: &str,
        case: &str,
        ours: &Measurement,
        peer: Option<&Measurement>,
    ) -> Result<Row, String> {
        if let Some(peer) = peer
            && peer.unit != ours.unit
        {
            return Err(format!(
                "{}: `ours` is in {} but {} is in {}",
                ours.group, ours.unit, peer.function, peer.unit
            ));
        }
        let ratio = peer.map(|peer| {
            if ours.unit == "ns" {
                peer.value / ours.value
            } else {
                ours.value / peer.value
            }
        });
        Ok(Row {
            suite: suite.to_owned(),
            case: case.to_owned(),
            unit: ours.unit,
            ours: ours.value,
            peer: peer.map(|p| p.function.clone()),
            peer_value: peer.map(|p| p.value),
            ratio,
            runs: 1,
            ratio_range: ratio.map(|r| (r, r)),
        })
    }
}

/// One row per (suite, case, peer) of the first run: the medians of `ours`, the peer's value
/// and the ratio over every run (each run's ratio is side by side within that run), with the
/// ratios' range. A row missing from a later run is an error: the runs measured different
/// things.
pub fn median_rows(runs: &[Vec<Row>]) -> Result<Vec<Row>, String> {
    let Some(first) = runs.first() else {
        return Err("no bench runs".to_owned());
    };
    // Every run must hold the same rows: one missing from the first is as wrong as one
    // missing from a later run (checked below, for each row of the first).
    if let Some(extra) = runs.iter().flatten().find(|r| {
        !first
            .iter()
            .any(|f| f.suite == r.suite && f.case == r.case && f.peer == r.peer)
    }) {
        return Err(format!(
            "{}/{} vs {} is missing from the first run",
            extra.suite,
            extra.case,
            extra.peer.as_deref().unwrap_or("-")
        ));
    }
    first
        .iter()
        .map(|row| {
            let same: Vec<&Row> = runs
                .iter()
                .map(|run| {
                    run.iter()
                        .find(|r| r.suite == row.suite && r.case == row.case && r.peer == row.peer)
                        .ok_or_else(|| {
                            format!(
                                "{}/{} vs {} is missing from a run",
                                row.suite,
                                row.case,
                                row.peer.as_deref().unwrap_or("-")
                            )
                        })
                })
                .collect::<Result<_, _>>()?;
            let ratios: Option<Vec<f64>> = same.iter().map(|r| r.ratio).collect();
            let peer_values: Option<Vec<f64>> = same.iter().map(|r| r.peer_value).collect();
            Ok(Row {
                suite: row.suite.clone(),
                case: row.case.clone(),
                unit: row.unit,
                ours: median(same.iter().map(|r| r.ours).collect()),
                peer: row.peer.clone(),
                peer_value: peer_values.map(median),
                ratio: ratios.clone().map(median),
                runs: same.len(),
                ratio_range: ratios.map(|ratios| {
                    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    (low, high)
                }),
            })
        })
        .collect()
}

/// The median (the mean of the middle two for an even count); `values` is not empty.
fn median(mut values: Vec<f64>) -> f64 {
    debug_assert!(!values.is_empty());
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

pub fn write(out_dir: &Path, suites: &[&Suite], rows: &[Row]) -> Result<(), String> {
    fs::create_dir_all(out_dir).map_err(|e| format!("creating {}: {e}", out_dir.display()))?;
    let results: Vec<_> = rows
        .iter()
        .map(|row| {
            json!({
                "suite": row.suite,
                "case": row.case,
                "unit": row.unit,
                "ours": row.ours,
                "peer": row.peer,
                "peer_value": row.peer_value,
                "ratio": row.ratio,
                "runs": row.runs,
                "ratio_min": row.ratio_range.map(|(low, _)| low),
                "ratio_max": row.ratio_range.map(|(_, high)| high),
            })
        })
        .collect();
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    write_file(&out_dir.join("results.json"), &text)?;

    let mut markdown = String::from(
        "# Benchmark report\n\nMedians measured side by side in one run; ratio > 1 means eventstore is better. \
         With several runs (`--runs`), each figure is the median over the runs and the range \
         gives the lowest and highest ratio.\n",
    );
    for suite in suites {
        let suite_rows: Vec<&Row> = rows.iter().filter(|r| r.suite == suite.name).collect();
        let _ = write!(markdown, "\n## {} ({})\n\n", suite.name, suite.title);
        if suite_rows.is_empty() {
            markdown.push_str("No measurements.\n");
            continue;
        }
        markdown.push_str(
            "| case | unit | ours | peer | peer value | ratio | range (runs) |\n|---|---|---:|---|---:|---:|---|\n",
        );
        for row in &suite_rows {
            let _ = writeln!(
                markdown,
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.case,
                row.unit,
                human(row.ours),
                row.peer.as_deref().unwrap_or("-"),
                row.peer_value.map_or_else(|| "-".to_owned(), human),
                row.ratio
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x")),
                range(row),
            );
        }
        let svg_name = format!("{}.svg", suite.name);
        write_file(&out_dir.join(&svg_name), &plot(suite.name, &suite_rows))?;
        let _ = write!(markdown, "\n![{} ratios]({svg_name})\n", suite.name);
    }
    write_file(&out_dir.join("report.md"), &markdown)
}

/// `low-high (runs)`, or `-` for a row without a ratio.
fn range(row: &Row) -> String {
    row.ratio_range.map_or_else(
        || "-".to_owned(),
        |(low, high)| format!("{low:.2}-{high:.2}x ({})", row.runs),
    )
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A number with an SI suffix, three significant digits.
fn human(value: f64) -> String {
    let (scaled, suffix) = match value.abs() {
        v if v >= 1e9 => (value / 1e9, "G"),
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    format!("{scaled:.3}{suffix}")
}

/// A horizontal bar per (case, peer): log2 of the ratio, with the parity line at 1x.
fn plot(suite: &str, rows: &[&Row]) -> String {
    let rows: Vec<(&Row, f64)> = rows
        .iter()
        .filter_map(|r| r.ratio.map(|q| (*r, q)))
        .collect();
    let (label_width, bar_width, row_height) = (330.0, 420.0, 18.0);
    let height = 40.0 + row_height * rows.len() as f64;
    let max_log = rows
        .iter()
        .map(|(_, q)| q.log2().abs())
        .fold(1.0_f64, f64::max);
    let scale = (bar_width / 2.0) / max_log;
    let axis = label_width + bar_width / 2.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">\n\
         <text x=\"4\" y=\"14\">{suite}: log2(ratio), right of the line = eventstore faster</text>\n\
         <line x1=\"{axis}\" y1=\"20\" x2=\"{axis}\" y2=\"{height}\" stroke=\"black\"/>\n",
        w = label_width + bar_width + 80.0,
    );
    for (index, (row, ratio)) in rows.iter().enumerate() {
        let y = 24.0 + row_height * index as f64;
        let length = ratio.log2() * scale;
        let (x, color) = if length >= 0.0 {
            (axis, "#2a7")
        } else {
            (axis + length, "#c33")
        };
        let _ = writeln!(
            svg,
            "<text x=\"4\" y=\"{ty}\">{case} vs {peer}</text>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{color}\"/>\
             <text x=\"{lx}\" y=\"{ty}\">{ratio:.2}x</text>",
            ty = y + 12.0,
            case = row.case,
            peer = row.peer.as_deref().unwrap_or("-"),
            w = length.abs().max(1.0),
            h = row_height - 4.0,
            lx = label_width + bar_width + 4.0,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

pub fn print_summary(rows: &[Row]) {
    println!(
        "{:<8} {:<28} {:<18} {:>12} {:>12} {:>8}",
        "suite", "case", "peer", "ours", "peer", "ratio"
    );
    for row in rows {
        println!(
            "{:<8} {:<28} {:<18} {:>12} {:>12} {:>8}",
            row.suite,
            row.case,
            row.peer.as_deref().unwrap_or("-"),
            human(row.ours),
            row.peer_value.map_or_else(|| "-".to_owned(), human),
            row.ratio
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(function: &str, unit: &'static str, value: f64) -> Measurement {
        Measurement {
            group: "s/c".into(),
            function: function.into(),
            unit,
            value,
        }
    }

    #[test]
    fn ratio_is_above_one_when_we_are_better_in_either_direction() {
        let rate = Row::new(
            "s",
            "c",
            &measurement("ours", "elements/s", 300.0),
            Some(&measurement("p", "elements/s", 100.0)),
        )
        .unwrap();
        assert_eq!(rate.ratio, Some(3.0));
        let time = Row::new(
            "s",
            "c",
            &measurement("ours", "ns", 10.0),
            Some(&measurement("p", "ns", 40.0)),
        )
        .unwrap();
        assert_eq!(time.ratio, Some(4.0));
        let alone = Row::new("s", "c", &measurement("ours", "ns", 10.0), None).unwrap();
        assert_eq!(
            (alone.peer, alone.peer_value, alone.ratio),
            (None, None, None)
        );
    }

    #[test]
    fn mixed_units_are_an_error() {
        assert!(
            Row::new(
                "s",
                "c",
                &measurement("ours", "ns", 1.0),
                Some(&measurement("p", "elements/s", 1.0))
            )
            .is_err()
        );
    }

    fn row(ours: f64, peer: f64) -> Row {
        Row::new(
            "s",
            "c",
            &measurement("ours", "elements/s", ours),
            Some(&measurement("p", "elements/s", peer)),
        )
        .unwrap()
    }

    #[test]
    fn several_runs_give_medians_and_the_range_of_ratios() {
        // The median ratio is the median of each run's own ratio, not ours/peer of medians.
        let runs = vec![
            vec![row(100.0, 50.0)],
            vec![row(300.0, 100.0)],
            vec![row(90.0, 90.0)],
        ];
        let rows = median_rows(&runs).unwrap();
        assert_eq!(rows.len(), 1);
        let only = &rows[0];
        assert_eq!((only.ours, only.peer_value), (100.0, Some(90.0)));
        assert_eq!(only.ratio, Some(2.0));
        assert_eq!(only.ratio_range, Some((1.0, 3.0)));
        assert_eq!(only.runs, 3);
        let even = median_rows(&runs[..2]).unwrap();
        assert_eq!(even[0].ratio, Some(2.5));
    }

    #[test]
    fn a_row_missing_from_a_run_is_an_error() {
        let mut other = row(1.0, 1.0);
        other.case = "d".into();
        assert!(median_rows(&[vec![row(1.0, 1.0)], vec![other]]).is_err());
        assert!(median_rows(&[]).is_err());
        // A row only a later run has is as wrong as one a later run lacks.
        let mut extra = row(1.0, 1.0);
        extra.case = "d".into();
        let first = vec![row(1.0, 1.0)];
        let later = vec![row(1.0, 1.0), extra];
        assert!(median_rows(&[first, later]).is_err());
    }

    #[test]
    fn human_scales() {
        assert_eq!(human(1_500_000.0), "1.500M");
        assert_eq!(human(12.0), "12.000");
    }
}
