//! `diff --svg FILE` over several reports: each figure as a small line chart over the reports
//! (`#1` the first), a grid of them, two a row. Drawn with plotters' SVG backend, text as SVG
//! `<text>` (no font library).

use anyhow::{Context, Result};
use plotters::prelude::*;

use crate::diff::{TrendReport, Unit};

const FONT: &str = "sans-serif";
const COLUMNS: usize = 2;
const CHART_WIDTH: u32 = 480;
const CHART_HEIGHT: u32 = 220;
const HEADER: u32 = 40;
/// Above this many figures the charts would not be read: the first ones are drawn, and the
/// header says how many were left out.
const MAX_CHARTS: usize = 60;
const LINE_COLOUR: RGBColor = RGBColor(31, 119, 180);

/// The grid of charts, as an SVG document.
/// Errors: plotters failing to draw (not expected with the SVG backend).
pub fn trend(report: &TrendReport) -> Result<String> {
    let shown = report.figures.len().min(MAX_CHARTS);
    let rows = shown.div_ceil(COLUMNS).max(1) as u32;
    let width = CHART_WIDTH * COLUMNS as u32;
    let height = HEADER + rows * CHART_HEIGHT;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (header, grid) = root.split_vertically(HEADER);
        let mut title = format!(
            "xferbench: {} `{}` reports, #1 {} … #{} {}",
            report.reports.len(),
            report.of,
            report.reports.first().map_or("", |r| r.file.as_str()),
            report.reports.len(),
            report.reports.last().map_or("", |r| r.file.as_str()),
        );
        if shown < report.figures.len() {
            title.push_str(&format!(
                " (the first {shown} of {} figures)",
                report.figures.len()
            ));
        }
        header.draw(&Text::new(title, (12, 12), (FONT, 16).into_font()))?;
        let areas = grid.split_evenly((rows as usize, COLUMNS));
        for (figure, area) in report.figures.iter().take(shown).zip(areas) {
            let (scale, unit) = match figure.unit {
                Unit::BytesPerSec => (1e-6, "MB/s"),
                Unit::Microseconds => (1.0, "µs"),
            };
            let points: Vec<(f64, f64)> = figure
                .values
                .iter()
                .enumerate()
                .filter_map(|(n, value)| value.map(|v| ((n + 1) as f64, v * scale)))
                .collect();
            let top = points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.15;
            let reports = report.reports.len() as f64;
            let mut chart = ChartBuilder::on(&area)
                .caption(format!("{} ({unit})", figure.figure), (FONT, 14))
                .margin(10)
                .x_label_area_size(24)
                .y_label_area_size(56)
                .build_cartesian_2d(0.5f64..reports + 0.5, 0f64..top.max(1.0))?;
            chart
                .configure_mesh()
                .x_labels(report.reports.len().min(12))
                .x_label_formatter(&|x| format!("#{}", x.round() as i64))
                .y_label_formatter(&|y| format!("{y:.0}"))
                .label_style((FONT, 11))
                .light_line_style(TRANSPARENT)
                .bold_line_style(RGBColor(230, 230, 230))
                .draw()?;
            chart.draw_series(LineSeries::new(
                points.iter().copied(),
                LINE_COLOUR.stroke_width(2),
            ))?;
            chart.draw_series(
                points
                    .iter()
                    .map(|point| Circle::new(*point, 3, LINE_COLOUR.filled())),
            )?;
        }
        root.present().context("drawing the trend")?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{Better, FigureDiff, Source, TrendFigure, Verdict};

    #[test]
    fn each_figure_is_a_chart_titled_with_its_name_and_unit() {
        let source = |file: &str| Source {
            file: file.into(),
            hostname: String::new(),
            kernel: String::new(),
            xferbench: String::new(),
        };
        let figure = |name: &str, unit, values: Vec<Option<f64>>| TrendFigure {
            figure: name.into(),
            unit,
            better: Better::Higher,
            values,
            change_percent: None,
            last_step: FigureDiff {
                figure: name.into(),
                unit,
                better: Better::Higher,
                old: None,
                new: None,
                change_percent: None,
                verdict: Verdict::OnlyNew,
                basis: None,
                old_runs: 0,
                new_runs: 0,
                conditions: Vec::new(),
            },
        };
        let report = TrendReport {
            of: "run".into(),
            reports: vec![source("mon.json"), source("tue.json"), source("wed.json")],
            threshold_percent: 5.0,
            changes: Vec::new(),
            figures: vec![
                figure(
                    "paths[tcp] · network",
                    Unit::BytesPerSec,
                    vec![Some(117e6), None, Some(23e6)],
                ),
                figure(
                    "paths[tcp] · latency median",
                    Unit::Microseconds,
                    vec![Some(7.0), Some(7.5), Some(9.0)],
                ),
            ],
            regressions: 0,
        };
        let svg = trend(&report).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("paths[tcp] · network (MB/s)"), "{svg}");
        assert!(svg.contains("paths[tcp] · latency median (µs)"), "{svg}");
        assert!(svg.contains("#1 mon.json"), "{svg}");
        // Five measured points in all: the missing one is not drawn.
        assert_eq!(svg.matches("<circle").count(), 5, "{svg}");
    }
}
