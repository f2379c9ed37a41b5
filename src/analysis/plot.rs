//! `tickcap analyze --plot DIR`: PNG charts a trader would rather look at
//! than read — ticks per second over the day (all and per connection) and
//! the price of chosen instruments over the day. plotters' bitmap backend
//! with the DejaVu font embedded (no system fonts needed).

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;

use super::analyze::Analysis;

/// Chart size in pixels.
pub const SIZE: (u32, u32) = (1200, 600);

fn font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// A plotting failure.
#[derive(Debug, thiserror::Error)]
#[error("plot {path}: {message}")]
pub struct PlotError {
    path: PathBuf,
    message: String,
}

fn err(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Seconds since local midnight of an epoch second, in hours (for the x axis).
fn hour_of_day(sec: i64, offset_secs: i64) -> f64 {
    (sec + offset_secs).rem_euclid(86_400) as f64 / 3600.0
}

fn hhmm(h: &f64) -> String {
    let m = (h * 60.0).round() as i64;
    format!("{:02}:{:02}", m / 60 % 24, m % 60)
}

fn hhmmss(h: &f64) -> String {
    let s = (h * 3600.0).round() as i64;
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}

/// Time-of-day labels: with seconds for spans under two hours.
fn time_label(span_hours: f64) -> fn(&f64) -> String {
    if span_hours < 2.0 {
        hhmmss
    } else {
        hhmm
    }
}

/// At least ten seconds wide.
const MIN_SPAN: f64 = 10.0 / 3600.0;

/// Writes `ticks_per_second.png` (total and per connection) and one
/// `price_<token>.png` per instrument with a series. Returns the files.
pub fn write_all(
    s: &Analysis,
    dir: &Path,
    offset_secs: i64,
    title: &str,
    symbols: Option<&crate::kite::Directory>,
) -> Result<Vec<PathBuf>, PlotError> {
    font();
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let mut out = Vec::new();
    let path = dir.join("ticks_per_second.png");
    ticks_per_second(s, &path, offset_secs, title)?;
    out.push(path);
    let mut tokens: Vec<&u32> = s.series.keys().collect();
    tokens.sort();
    for t in tokens {
        let path = dir.join(format!("price_{t}.png"));
        let name = match symbols.and_then(|d| d.symbol(*t)) {
            Some(sym) => format!("{sym} ({t})"),
            None => format!("instrument {t}"),
        };
        price(s, *t, &name, &path, offset_secs)?;
        out.push(path);
    }
    Ok(out)
}

fn ticks_per_second(s: &Analysis, path: &Path, offset: i64, title: &str) -> Result<(), PlotError> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let mut secs: Vec<(i64, u64)> = s.per_second.iter().map(|(a, b)| (*a, *b)).collect();
    secs.sort();
    let (x0, x1) = match (secs.first(), secs.last()) {
        (Some(a), Some(b)) => (
            hour_of_day(a.0, offset),
            hour_of_day(b.0, offset).max(hour_of_day(a.0, offset) + MIN_SPAN),
        ),
        _ => (9.25, 15.5),
    };
    let ymax = secs.iter().map(|x| x.1).max().unwrap_or(1).max(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("ticks per second — {title}"), ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, 0.0..ymax)
        .map_err(|e| err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("time of day")
        .y_desc("ticks/s")
        .x_label_formatter(&time_label(x1 - x0))
        .draw()
        .map_err(|e| err(path, e))?;
    chart
        .draw_series(LineSeries::new(
            secs.iter()
                .map(|(t, n)| (hour_of_day(*t, offset), *n as f64)),
            &BLACK,
        ))
        .map_err(|e| err(path, e))?
        .label("all")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    for (c, color) in [(1u8, RED), (2, BLUE), (3, GREEN)] {
        let mut pts: Vec<(i64, u64)> = s
            .per_second_conn
            .iter()
            .filter(|((_, id), _)| *id == c)
            .map(|((t, _), n)| (*t, *n))
            .collect();
        if pts.is_empty() {
            continue;
        }
        pts.sort();
        chart
            .draw_series(LineSeries::new(
                pts.iter()
                    .map(|(t, n)| (hour_of_day(*t, offset), *n as f64)),
                color,
            ))
            .map_err(|e| err(path, e))?
            .label(format!("connection {c}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}

fn price(s: &Analysis, token: u32, name: &str, path: &Path, offset: i64) -> Result<(), PlotError> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let mut pts: Vec<(i64, f64)> = s.series.get(&token).cloned().unwrap_or_default();
    pts.sort_by_key(|p| p.0);
    let xs = |m: i64| {
        hour_of_day(m.div_euclid(1_000_000), offset) + (m.rem_euclid(1_000_000) as f64 / 3.6e9)
    };
    let (x0, x1) = match (pts.first(), pts.last()) {
        (Some(a), Some(b)) => (xs(a.0), xs(b.0).max(xs(a.0) + MIN_SPAN)),
        _ => (9.25, 15.5),
    };
    let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() {
        (lo, hi.max(lo + 1e-9))
    } else {
        (0.0, 1.0)
    };
    let pad = (hi - lo) * 0.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("last price — {name}"), ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, (lo - pad)..(hi + pad))
        .map_err(|e| err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("time of day")
        .y_desc("price")
        .x_label_formatter(&time_label(x1 - x0))
        .draw()
        .map_err(|e| err(path, e))?;
    chart
        .draw_series(LineSeries::new(
            pts.iter().map(|(t, p)| (xs(*t), *p)),
            &BLUE,
        ))
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}
