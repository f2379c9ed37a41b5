//! Coverage of captured days, from their events journals
//! ([`crate::events::coverage`]): which journal belongs with which files,
//! reading it (plain or zstd), and the report as text or JSON.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::days::Family;
use crate::events::coverage::{GapKind, Report, Tracker};
use crate::time::ZoneFormatter;

/// The events journals that describe `files` (tick, orders or events files
/// of any day), in order, each once: every events segment of each day named.
pub fn journals_for(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some((_, id, _)) = crate::days::parse_any_name(&name) else {
            continue;
        };
        let dir = f
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        for s in crate::days::segments_of_in(dir, Family::Events, id.day) {
            if !out.contains(&s.path) {
                out.push(s.path);
            }
        }
    }
    crate::days::sort_paths(&mut out);
    out
}

/// Replays `journals` in order into one report; also how many lines did
/// not parse (a torn tail, a newer tickcap's kinds). A journal the service
/// is still appending to is read up to its last whole frame and line.
pub fn read(journals: &[PathBuf]) -> std::io::Result<(Report, u64)> {
    let mut t = Tracker::default();
    let mut bad = 0;
    for j in journals {
        let text = crate::zst::read_all(j)?;
        for line in text.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match crate::events::parse_event_line(line) {
                Ok((at, e)) => t.feed(at, &e),
                Err(_) => bad += 1,
            }
        }
    }
    Ok((t.finish(None), bad))
}

/// Every coverage gap of `journals` as `(instrument, start, end)`, epoch µs:
/// what the candle repair plans from (`tickcap candles repair` and the
/// service's own).
pub fn gap_spans(journals: &[PathBuf]) -> std::io::Result<Vec<(u32, i64, i64)>> {
    let (report, _) = read(journals)?;
    Ok(report
        .gaps()
        .iter()
        .map(|g| (g.instrument_token, g.start, g.end))
        .collect())
}

/// Gaps that make a capture incomplete: all but a first connect after a
/// start that took at most `startup_grace_micros`.
pub fn failing_gaps(r: &Report, startup_grace_micros: i64) -> Vec<&crate::events::coverage::Gap> {
    r.gaps()
        .into_iter()
        .filter(|g| !(g.kind == GapKind::Startup && g.end - g.start <= startup_grace_micros))
        .collect()
}

/// Gaps with the same start, end and cause, together (a connection's drop
/// is one line for all its instruments): (start, end, cause, tokens).
pub fn group_gaps<'a>(
    gaps: impl IntoIterator<Item = &'a crate::events::coverage::Gap>,
) -> Vec<(i64, i64, String, Vec<u32>)> {
    let mut m: std::collections::BTreeMap<(i64, i64, &str), Vec<u32>> = Default::default();
    for g in gaps {
        m.entry((g.start, g.end, &g.cause))
            .or_default()
            .push(g.instrument_token);
    }
    m.into_iter()
        .map(|((s, e, c), t)| (s, e, c.to_owned(), t))
        .collect()
}

/// `N instrument(s) (a, b, c, …)`.
pub fn tokens_text(tokens: &[u32]) -> String {
    let head: Vec<String> = tokens.iter().take(8).map(u32::to_string).collect();
    let more = if tokens.len() > 8 { ", …" } else { "" };
    format!("{} instrument(s) ({}{more})", tokens.len(), head.join(", "))
}

/// ISO 8601 in `zone`, as in the tick lines.
pub fn iso(zone: &mut ZoneFormatter, micros: i64) -> String {
    let mut b = Vec::with_capacity(40);
    zone.write_micros(&mut b, micros);
    String::from_utf8_lossy(&b).into_owned()
}

/// One gap as JSON: `instrument_token`, `start`, `end`, `cause` (and
/// `kind`, `seconds`).
pub fn gap_json(zone: &mut ZoneFormatter, g: &crate::events::coverage::Gap) -> Value {
    json!({
        "instrument_token": g.instrument_token,
        "start": iso(zone, g.start),
        "end": iso(zone, g.end),
        "cause": g.cause,
        "kind": g.kind,
        "seconds": (g.end - g.start) as f64 / 1e6,
    })
}

/// The whole report as JSON (`only`: one instrument).
pub fn report_json(zone: &mut ZoneFormatter, r: &Report, only: Option<u32>) -> Value {
    let pick = |t: &u32| only.is_none_or(|o| o == *t);
    let instruments: Vec<Value> = r
        .instruments
        .iter()
        .filter(|(t, _)| pick(t))
        .map(|(t, i)| {
            json!({
                "instrument_token": t,
                "covered_share": i.share(),
                "covered_seconds": i.covered_micros as f64 / 1e6,
                "watched_seconds": i.watched_micros as f64 / 1e6,
                "covered": i.covered.iter().map(|(s, e)| json!({"start": iso(zone, *s), "end": iso(zone, *e)})).collect::<Vec<_>>(),
                "gaps": i.gaps.len(),
            })
        })
        .collect();
    let gaps: Vec<Value> = r
        .gaps()
        .into_iter()
        .filter(|g| pick(&g.instrument_token))
        .map(|g| gap_json(zone, g))
        .collect();
    let runs: Vec<Value> = r
        .runs
        .iter()
        .map(|run| json!({"start": iso(zone, run.start), "end": iso(zone, run.end), "clean": run.clean}))
        .collect();
    json!({"runs": runs, "instruments": instruments, "gaps": gaps})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_file_finds_every_events_segment_of_its_day() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "market_data_2026-11-27.jsonl",
            "events_2026-11-27.jsonl",
            "events_2026-11-27.1.jsonl.zst",
            "events_2026-11-26.jsonl",
        ] {
            std::fs::write(dir.path().join(n), "").unwrap();
        }
        let got = journals_for(&[
            dir.path().join("market_data_2026-11-27.jsonl"),
            dir.path().join("events_2026-11-27.jsonl"),
        ]);
        let names: Vec<String> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["events_2026-11-27.jsonl", "events_2026-11-27.1.jsonl.zst"]
        );
    }
}
