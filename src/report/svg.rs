//! The plot (`--plot FILE.svg`): throughput over time of each path's network test and copy,
//! against the disk baselines and the link classes around the fastest figure.
//!
//! Each stage is drawn from its last run, as a step line (one step per reporting interval), on a
//! time axis that starts at zero for every stage. Text is written as SVG `<text>` elements, so no
//! font library is linked; label widths are plotters' estimate, hence the generous margins.
//!
//! [`mesh`] draws `mesh --svg FILE`: each matrix of a mesh as a heat map.

mod mesh;
mod trend;

pub use mesh::mesh;
pub use trend::trend;

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::export::Exporter;
use crate::classes::{self, LinkClass};
use crate::measure::Measurement;
use crate::plan::{RunReport, Summary};
use crate::units::{Rate, format_bytes};

pub struct SvgExporter;

impl Exporter for SvgExporter {
    fn render(&self, report: &RunReport) -> Result<Vec<u8>> {
        render(report).map(String::into_bytes)
    }
}

const WIDTH: u32 = 1000;
const CHART_HEIGHT: u32 = 540;
const LEGEND_ROW: i32 = 22;
/// Labels up to this long fit two to a row (about 7 px a character at the legend's size).
const LEGEND_TWO_COLUMN_CHARS: usize = 58;
const FONT: &str = "sans-serif";

/// Colours of the measured series, one per series in turn (Tableau 10, readable on white).
const SERIES_COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];
const SOURCE_READ_COLOUR: RGBColor = RGBColor(44, 160, 44);
const DESTINATION_WRITE_COLOUR: RGBColor = RGBColor(214, 39, 40);
const LINK_COLOUR: RGBColor = RGBColor(127, 127, 127);

/// A measured stage over time: (seconds, MB/s) corners of its step line.
struct Series {
    label: String,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

/// A horizontal reference line across the whole chart.
struct Level {
    label: String,
    colour: RGBColor,
    mb_per_sec: f64,
    /// Link classes are labelled on the line too, since they are the scale a reader judges by.
    inline: Option<String>,
}

fn render(report: &RunReport) -> Result<String> {
    let series = series(report);
    let mut levels = baselines(report);
    let highest = series
        .iter()
        .flat_map(|s| s.points.iter().map(|&(_, mb)| mb))
        .chain(levels.iter().map(|l| l.mb_per_sec))
        .fold(0.0, f64::max);
    levels.extend(link_levels(highest));
    let top = levels.iter().map(|l| l.mb_per_sec).fold(highest, f64::max);
    let y_max = if top > 0.0 { top * 1.12 } else { 1.0 };
    let x_end = series
        .iter()
        .flat_map(|s| s.points.iter().map(|&(secs, _)| secs))
        .fold(0.0, f64::max);
    let x_max = if x_end > 0.0 { x_end } else { 1.0 };

    let longest = series
        .iter()
        .map(|s| s.label.chars().count())
        .chain(levels.iter().map(|l| l.label.chars().count()))
        .max()
        .unwrap_or(0);
    let columns = if longest <= LEGEND_TWO_COLUMN_CHARS {
        2
    } else {
        1
    };
    let legend_rows = (series.len() + levels.len()).div_ceil(columns) as u32;
    let height = CHART_HEIGHT + 16 + legend_rows * LEGEND_ROW as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (chart_area, legend_area) = root.split_vertically(CHART_HEIGHT);
        draw_chart(&chart_area, &title(report), &series, &levels, x_max, y_max)?;
        draw_legend(&legend_area, &series, &levels, columns)?;
        root.present().context("drawing the plot")?;
    }
    Ok(svg)
}

/// What was measured, where, and how: the plot must make sense on its own.
fn title(report: &RunReport) -> String {
    let p = &report.parameters;
    let paths: Vec<String> = report.paths.iter().map(|r| r.path.to_string()).collect();
    format!(
        "{} to {}: throughput over time ({} test file, {} streams)",
        if paths.is_empty() {
            "nothing measured".to_string()
        } else {
            paths.join(", ")
        },
        p.server,
        format_bytes(p.size),
        p.streams
    )
}

fn series(report: &RunReport) -> Vec<Series> {
    let mut colours = SERIES_COLOURS.iter().cycle();
    let mut all = Vec::new();
    for result in &report.paths {
        let stages = [
            ("network, mem to mem", &result.network),
            ("copy, disk to disk", &result.copy),
        ];
        for (what, summary) in stages {
            let Some(summary) = summary else { continue };
            let Some(last) = summary.measurements.last() else {
                continue;
            };
            // A rate that fell for good says where, in the legend beside its line.
            let knee = match &last.knee {
                Some(knee) => format!(
                    "; fell after {:.0} s from {} to {}",
                    knee.at_secs,
                    Rate {
                        bytes_per_sec: knee.burst_bytes_per_sec
                    },
                    Rate {
                        bytes_per_sec: knee.sustained_bytes_per_sec
                    }
                ),
                None => String::new(),
            };
            all.push(Series {
                label: format!("{} {what}: median {}{knee}", result.path, summary.rate()),
                colour: *colours.next().expect("the cycle is endless"),
                points: steps(last),
            });
        }
    }
    all
}

/// Intervals shorter than this are the drain after a sender stopped: too short for a rate that
/// means anything, so the plot leaves them out (the totals keep their bytes).
const SHORTEST_PLOTTED_SECS: f64 = 0.05;

/// One flat step per interval; a measurement without intervals is one step over its whole time.
fn steps(m: &Measurement) -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    for interval in m
        .intervals
        .iter()
        .filter(|i| i.secs >= SHORTEST_PLOTTED_SECS)
    {
        let mb = interval.bytes as f64 / interval.secs / 1e6;
        points.push((interval.start_secs, mb));
        points.push((interval.start_secs + interval.secs, mb));
    }
    if points.is_empty() && m.secs > 0.0 {
        points = vec![
            (0.0, m.rate().mb_per_sec()),
            (m.secs, m.rate().mb_per_sec()),
        ];
    }
    points
}

fn baselines(report: &RunReport) -> Vec<Level> {
    let level = |name: &str, colour, summary: &Option<Summary>| {
        summary.as_ref().map(|s| Level {
            label: format!("{name} baseline, median {}", s.rate()),
            colour,
            mb_per_sec: s.rate().mb_per_sec(),
            inline: None,
        })
    };
    [
        level("source read", SOURCE_READ_COLOUR, &report.source_read),
        level(
            "destination write",
            DESTINATION_WRITE_COLOUR,
            &report.destination_write,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The link class just below the highest figure and the one just above it.
fn link_levels(highest_mb_per_sec: f64) -> Vec<Level> {
    if highest_mb_per_sec <= 0.0 {
        return Vec::new();
    }
    let placed = classes::place_link(Rate::from_mb_per_sec(highest_mb_per_sec));
    let link = |class: LinkClass| {
        let rate = Rate::from_mb_per_sec(class.goodput_mb_s);
        Level {
            label: format!("{} goodput, {rate}", class.name),
            colour: LINK_COLOUR,
            mb_per_sec: class.goodput_mb_s,
            inline: Some(format!("{} {}", class.name, rate.bytes_text())),
        }
    };
    [placed.saturates, placed.short_of]
        .into_iter()
        .flatten()
        .map(link)
        .collect()
}

fn draw_chart(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    series: &[Series],
    levels: &[Level],
    x_max: f64,
    y_max: f64,
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, title_size(title)))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .right_y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?
        .set_secondary_coord(0f64..x_max, 0f64..y_max * 8.0 / 1000.0);
    chart
        .configure_mesh()
        .x_desc("seconds since the stage began (the last run of each stage)")
        .y_desc("MB/s (10^6 B/s)")
        .x_label_formatter(&|secs| format!("{}", (secs * 10.0).round() / 10.0))
        .y_label_formatter(&|mb| format!("{mb:.0}"))
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 14))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("Gb/s")
        .y_label_formatter(&|gbit| format!("{}", (gbit * 10.0).round() / 10.0))
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 14))
        .draw()?;

    for level in levels {
        chart.draw_series(DashedLineSeries::new(
            [(0.0, level.mb_per_sec), (x_max, level.mb_per_sec)],
            8,
            5,
            level.colour.stroke_width(2),
        ))?;
        if let Some(text) = &level.inline {
            let style = TextStyle::from((FONT, 14).into_font())
                .color(&level.colour)
                .pos(Pos::new(HPos::Right, VPos::Bottom));
            chart.draw_series(std::iter::once(
                EmptyElement::at((x_max, level.mb_per_sec))
                    + Text::new(text.clone(), (-6, -4), style),
            ))?;
        }
    }
    for s in series {
        chart.draw_series(LineSeries::new(
            s.points.iter().copied(),
            s.colour.stroke_width(2),
        ))?;
    }
    Ok(())
}

/// The title's font size: 22 unless a long host name would push the title past the edges.
fn title_size(title: &str) -> f64 {
    // A sans-serif character is about 0.55 em wide; plotters draws `size / 1.24` px fonts.
    let fitting = (WIDTH as f64 - 40.0) * 1.24 / (0.55 * title.chars().count() as f64);
    fitting.clamp(12.0, 22.0)
}

/// The legend below the chart, in columns, so it never hides a line.
fn draw_legend(
    area: &DrawingArea<SVGBackend, Shift>,
    series: &[Series],
    levels: &[Level],
    columns: usize,
) -> Result<()> {
    let entries = series
        .iter()
        .map(|s| (&s.label, s.colour, false))
        .chain(levels.iter().map(|l| (&l.label, l.colour, true)));
    let column_width = (WIDTH as i32 - 2 * 72) / columns as i32;
    for (index, (label, colour, dashed)) in entries.enumerate() {
        let x = 72 + (index % columns) as i32 * column_width;
        let y = 12 + (index / columns) as i32 * LEGEND_ROW;
        let stroke = colour.stroke_width(2);
        if dashed {
            area.draw(&PathElement::new(vec![(x, y), (x + 12, y)], stroke))?;
            area.draw(&PathElement::new(vec![(x + 18, y), (x + 30, y)], stroke))?;
        } else {
            area.draw(&PathElement::new(vec![(x, y), (x + 30, y)], stroke))?;
        }
        let style = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(label.as_str(), (x + 38, y), style))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::export::sample_report;

    fn texts(svg: &str) -> Vec<String> {
        let document = roxmltree::Document::parse(svg).expect("well-formed XML");
        assert_eq!(document.root_element().tag_name().name(), "svg");
        document
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect()
    }

    #[test]
    fn the_plot_is_an_svg_document_naming_each_series_and_baseline() {
        let bytes = SvgExporter.render(&sample_report()).unwrap();
        let svg = String::from_utf8(bytes).unwrap();
        let texts = texts(&svg);
        let has = |prefix: &str| texts.iter().any(|t| t.starts_with(prefix));
        assert!(
            has("tcp to peer-b:7766: throughput over time (2.0 GB test file, 4 streams)"),
            "{texts:?}"
        );
        assert!(
            has("tcp network, mem to mem: median 1.15 GB/s (9.20 Gb/s)"),
            "{texts:?}"
        );
        assert!(
            has("tcp copy, disk to disk: median 397 MB/s (3.18 Gb/s)"),
            "{texts:?}"
        );
        assert!(
            has("source read baseline, median 1.55 GB/s (12.4 Gb/s)"),
            "{texts:?}"
        );
        assert!(
            has("destination write baseline, median 415 MB/s (3.32 Gb/s)"),
            "{texts:?}"
        );
        assert!(has("MB/s"), "{texts:?}");
        assert!(has("Gb/s"), "{texts:?}");
    }

    #[test]
    fn the_link_classes_around_the_highest_figure_are_drawn() {
        // The highest figure is the 1.55 GB/s source read: above 10 GbE, below 25 GbE.
        let svg = String::from_utf8(SvgExporter.render(&sample_report()).unwrap()).unwrap();
        let texts = texts(&svg);
        assert!(texts.iter().any(|t| t == "10 GbE 1.17 GB/s"), "{texts:?}");
        assert!(texts.iter().any(|t| t == "25 GbE 2.90 GB/s"), "{texts:?}");
        assert!(!texts.iter().any(|t| t.starts_with("2.5 GbE")), "{texts:?}");
        assert!(!texts.iter().any(|t| t.starts_with("40 GbE")), "{texts:?}");
    }

    #[test]
    fn a_copy_is_a_step_per_interval() {
        let report = sample_report();
        let copy = report.paths[0].copy.as_ref().unwrap();
        let points = steps(copy.measurements.last().unwrap());
        assert_eq!(points.len(), 16);
        assert_eq!(points[0], (0.0, 520.0));
        assert_eq!(points[1], (1.0, 520.0));
        assert_eq!(points[15], (7.5, 210.0));
    }

    #[test]
    fn a_run_that_measured_nothing_still_draws() {
        let mut report = sample_report();
        report.paths.clear();
        report.source_read = None;
        report.destination_write = None;
        let svg = String::from_utf8(SvgExporter.render(&report).unwrap()).unwrap();
        let texts = texts(&svg);
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("nothing measured to peer-b")),
            "{texts:?}"
        );
    }

    #[test]
    fn a_long_title_is_set_smaller_to_stay_on_the_page() {
        assert_eq!(title_size("tcp to peer-b:7766: throughput over time"), 22.0);
        let long = format!(
            "tcp to {}: throughput over time (8.6 GB test file, 4 streams)",
            "h".repeat(80)
        );
        let size = title_size(&long);
        assert!((12.0..22.0).contains(&size), "{size}");
        let width = long.chars().count() as f64 * 0.55 * size / 1.24;
        assert!(width <= WIDTH as f64 - 40.0 + 1e-9, "{width}");
    }
}
