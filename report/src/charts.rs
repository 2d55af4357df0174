//! The report's PNG charts, drawn with plotters on a bitmap.
//!
//! Text is set in DejaVu Sans, compiled in: a server or CI machine without
//! fonts still gets labelled charts.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::error::{ReportError, Result};

/// One line of a chart: its legend and a value per x position (gaps allowed).
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// A line chart: `x_labels` name the x positions, in order.
pub struct LineChart<'a> {
    pub name: &'static str,
    pub title: &'a str,
    pub y_label: &'a str,
    pub x_labels: Vec<String>,
    pub series: Vec<Series>,
    /// The top of the y axis (`None`: the largest value plus a margin).
    pub y_max: Option<f64>,
    /// Values are shares (0–1), shown as percentages.
    pub percent: bool,
    /// Where the legend goes: a corner the lines are unlikely to cross.
    pub legend: SeriesLabelPosition,
}

fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // DejaVu Sans is a valid TrueType font: this cannot fail.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// Distinct on white and for the common colour-vision deficiencies (the
/// Okabe–Ito set, yellow left out).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
    RGBColor(0, 0, 0),
];

const WIDTH: u32 = 960;
const HEIGHT: u32 = 520;

/// Draws `chart` into `path`.
pub fn draw(path: &Path, chart: &LineChart<'_>) -> Result<()> {
    register_font();
    let fail = |e: &dyn std::fmt::Display| ReportError::Chart {
        chart: chart.name,
        message: e.to_string(),
    };
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let points = chart.x_labels.len();
    let x_max = points.saturating_sub(1).max(1) as f64;
    let largest = chart
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0_f64, |a, &b| a.max(b));
    // Headroom above the largest value keeps the top band free for the
    // legend; above a fixed top, it keeps the points clear of the frame.
    let y_max = chart
        .y_max
        .map_or(if largest > 0.0 { largest * 1.4 } else { 1.0 }, |top| {
            top * 1.08
        });
    let mut plot = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 24))
        .margin(16)
        // The last x label is centred on the last point: room for its half.
        .margin_right(44)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.2..x_max + 0.2, 0.0..y_max)
        .map_err(|e| fail(&e))?;
    let labels = &chart.x_labels;
    let x_format = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let percent = chart.percent;
    let y_format = |y: &f64| {
        if percent {
            format!("{:.0} %", y * 100.0)
        } else {
            format!("{y:.0}")
        }
    };
    plot.configure_mesh()
        .x_labels(points.clamp(2, 7))
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .y_desc(chart.y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, series) in chart.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()].to_rgba();
        let pts: Vec<(f64, f64)> = series
            .values
            .iter()
            .enumerate()
            .filter_map(|(x, v)| v.map(|v| (x as f64, v)))
            .collect();
        plot.draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
            .map_err(|e| fail(&e))?
            .label(series.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
        plot.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(|e| fail(&e))?;
    }
    if !chart.series.is_empty() {
        plot.configure_series_labels()
            .position(chart.legend.clone())
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}
