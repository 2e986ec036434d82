//! `mesh --svg FILE`: each matrix of a mesh as a heat map, stacked in one SVG. Rows send,
//! columns receive (in the host list's order), each cell coloured by its figure and labelled
//! with it; the verdict on a slow host under its matrix.
//!
//! Drawn with plotters' SVG backend, text as SVG `<text>` (no font library), so text widths
//! are estimates: a sans-serif character is about 0.55 em. Many hosts shrink the cells so that
//! a matrix's grid stays within [`GRID_MAX`] pixels a side; text that no longer fits is left
//! out, the colours stay.

use std::collections::HashMap;

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::measure::TransportKind;
use crate::mesh::{MeshReport, Outcome, PairTest, TestKind, rate};
use crate::report::text::{mesh_summary, mesh_verdict};
use crate::units::Rate;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

const FONT: &str = "sans-serif";
const MARGIN: f64 = 16.0;
/// Wide enough for a matrix's legend and most verdicts at their full size.
const MIN_WIDTH: f64 = 760.0;
/// A matrix's grid is at most this many pixels a side, however many hosts.
const GRID_MAX: f64 = 1200.0;
const CELL_MAX_WIDTH: f64 = 84.0;
const CELL_MAX_HEIGHT: f64 = 30.0;
/// A host label longer than this many pixels is cut short with an ellipsis.
const LABEL_MAX: f64 = 220.0;
/// Pixel height of host labels and cell figures when they fit.
const TEXT_PX: f64 = 11.5;
/// Text smaller than this (pixels) would not be read: it is left out.
const SMALLEST_TEXT_PX: f64 = 7.0;
/// Height of a line of text: a heading, the legend, a note.
const LINE: f64 = 20.0;
const GAP_BETWEEN_MATRICES: f64 = 22.0;

/// From the worst figure of a matrix to its best (YlGnBu): darker is better.
const SCALE: [RGBColor; 7] = [
    RGBColor(237, 248, 177),
    RGBColor(199, 233, 180),
    RGBColor(127, 205, 187),
    RGBColor(65, 182, 196),
    RGBColor(29, 145, 192),
    RGBColor(34, 94, 168),
    RGBColor(12, 44, 132),
];
const DIAGONAL_COLOUR: RGBColor = RGBColor(210, 210, 210);
const NOT_ASKED_COLOUR: RGBColor = RGBColor(243, 243, 243);
const FAILED_COLOUR: RGBColor = RGBColor(214, 170, 170);
const FAILED_TEXT_COLOUR: RGBColor = RGBColor(140, 25, 25);
const DARK_TEXT: RGBColor = RGBColor(30, 30, 30);
const NOTE_COLOUR: RGBColor = RGBColor(80, 80, 80);

/// The mesh's heat maps, one per matrix of [`MeshReport::matrices`], as an SVG document.
pub fn mesh(report: &MeshReport) -> Result<String> {
    let geometry = Geometry::of(&report.hosts);
    let matrices: Vec<Matrix> = report
        .matrices()
        .into_iter()
        .map(|(kind, via)| Matrix::of(report, kind, via))
        .collect();
    let mut notes = Vec::new();
    if report.interrupted {
        notes.push(
            "interrupted: the tests under way were waited for; the rest did not run".to_string(),
        );
    }
    if geometry.label_px.is_none() {
        notes.push(
            "too many hosts to name each: rows and columns follow the host list's order"
                .to_string(),
        );
    }
    if matrices.is_empty() {
        notes.push("no test ran".to_string());
    }
    let top = MARGIN + LINE + 6.0 + notes.len() as f64 * LINE;
    let height = top
        + matrices
            .iter()
            .map(|m| geometry.block_height(m))
            .sum::<f64>()
        + MARGIN;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (geometry.width as u32, height.ceil() as u32))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let usable = geometry.width - 2.0 * MARGIN;
        let title = format!("xferbench {}", mesh_summary(report));
        text(
            &root,
            &title,
            (MARGIN, MARGIN + LINE / 2.0),
            fit(&title, usable, 16.0, 10.0),
            BLACK,
            Pos::new(HPos::Left, VPos::Center),
        )?;
        for (line, note) in notes.iter().enumerate() {
            let y = MARGIN + LINE + 6.0 + (line as f64 + 0.5) * LINE;
            let px = fit(note, usable, TEXT_PX, 8.0);
            let style = Pos::new(HPos::Left, VPos::Center);
            text(&root, note, (MARGIN, y), px, NOTE_COLOUR, style)?;
        }
        let mut y = top;
        for matrix in &matrices {
            y = geometry.draw(&root, matrix, y)?;
        }
        root.present().context("drawing the heat map")?;
    }
    Ok(svg)
}

/// What one cell of a matrix shows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    /// A host toward itself: never measured.
    Diagonal,
    /// A pair the mesh was not asked to measure (`--from`/`--to`, `--ring`), or did not reach.
    NotAsked,
    Failed,
    /// Measured, but without the figure this matrix shows.
    NoFigure,
    /// Gb/s for net and copy, the one-way median in µs for lat.
    Figure(f64),
}

/// One test over one path: its cells (row-major, senders by receivers) and what goes with them.
struct Matrix {
    kind: TestKind,
    heading: String,
    cells: Vec<Cell>,
    /// The lowest and highest figure, if any.
    range: Option<(f64, f64)>,
    /// Under the grid: the failures' count, the verdicts.
    notes: Vec<String>,
}

impl Matrix {
    fn of(report: &MeshReport, kind: TestKind, via: TransportKind) -> Matrix {
        let n = report.hosts.len();
        let index: HashMap<&str, usize> = report
            .hosts
            .iter()
            .enumerate()
            .map(|(i, host)| (host.as_str(), i))
            .collect();
        let mut cells: Vec<Cell> = (0..n * n)
            .map(|at| match at / n == at % n {
                true => Cell::Diagonal,
                false => Cell::NotAsked,
            })
            .collect();
        let (mut ran, mut failed) = (0, 0);
        for test in report.tests_of(kind, via) {
            ran += 1;
            let cell = figure(kind, test);
            failed += usize::from(cell == Cell::Failed);
            if let (Some(&from), Some(&to)) =
                (index.get(test.from.as_str()), index.get(test.to.as_str()))
            {
                cells[from * n + to] = cell;
            }
        }
        let range = cells
            .iter()
            .filter_map(|cell| match cell {
                Cell::Figure(value) => Some(*value),
                _ => None,
            })
            .fold(None, |range: Option<(f64, f64)>, value| match range {
                None => Some((value, value)),
                Some((low, high)) => Some((low.min(value), high.max(value))),
            });
        let mut notes = Vec::new();
        if failed > 0 {
            notes.push(format!(
                "{failed} of {ran} tests failed (the red-grey cells); the text report says why"
            ));
        }
        for slow in report
            .slow_hosts
            .iter()
            .filter(|slow| slow.test == kind && slow.via == via)
        {
            notes.push(format!("verdict: {}", mesh_verdict(slow)));
        }
        let heading = match kind {
            TestKind::Net => format!(
                "net over {via}, {} s each: the receiver's figure in Gb/s; rows send, columns receive",
                report.secs
            ),
            TestKind::Lat => format!(
                "lat over {via}, {} s each: one way (half the round trip), median in µs; rows send, columns receive",
                report.secs
            ),
            TestKind::Copy => {
                "copy over tcp, fsync on the receiver included, in Gb/s; rows send, columns receive"
                    .to_string()
            }
        };
        Matrix {
            kind,
            heading,
            cells,
            range,
            notes,
        }
    }
}

/// The cell of a test that ran.
fn figure(kind: TestKind, test: &PairTest) -> Cell {
    let Outcome::Measured(measured) = &test.outcome else {
        return Cell::Failed;
    };
    let value = match kind {
        TestKind::Lat => measured.latency.as_ref().map(|latency| latency.median_us),
        TestKind::Net | TestKind::Copy => {
            rate(measured).map(|bytes_per_sec| Rate { bytes_per_sec }.gbit_per_sec())
        }
    };
    value.map_or(Cell::NoFigure, Cell::Figure)
}

/// A figure as its cell says it: Gb/s to two decimals and µs to one, as the text matrix does.
fn figure_text(kind: TestKind, value: f64) -> String {
    match kind {
        TestKind::Lat => format!("{value:.1}"),
        TestKind::Net | TestKind::Copy => format!("{value:.2}"),
    }
}

/// A figure with its unit, for the legend.
fn figure_with_unit(kind: TestKind, value: f64) -> String {
    match kind {
        TestKind::Lat => format!("{} µs", figure_text(kind, value)),
        TestKind::Net | TestKind::Copy => format!("{} Gb/s", figure_text(kind, value)),
    }
}

/// Where `value` stands between the matrix's worst figure (0) and its best (1): the highest
/// throughput is best, the lowest latency.
fn goodness(kind: TestKind, value: f64, (low, high): (f64, f64)) -> f64 {
    if high <= low {
        return 0.5;
    }
    let up = ((value - low) / (high - low)).clamp(0.0, 1.0);
    match kind {
        TestKind::Lat => 1.0 - up,
        TestKind::Net | TestKind::Copy => up,
    }
}

/// The colour of a goodness, light (worst) to dark (best).
fn scale_colour(goodness: f64) -> RGBColor {
    let at = goodness.clamp(0.0, 1.0) * (SCALE.len() - 1) as f64;
    let below = (at.floor() as usize).min(SCALE.len() - 2);
    let part = at - below as f64;
    let (RGBColor(r0, g0, b0), RGBColor(r1, g1, b1)) = (SCALE[below], SCALE[below + 1]);
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * part).round() as u8;
    RGBColor(mix(r0, r1), mix(g0, g1), mix(b0, b1))
}

/// Text that reads on `fill`: white on dark, near black on light.
fn text_colour_on(RGBColor(r, g, b): RGBColor) -> RGBColor {
    let luminance = 0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64;
    if luminance < 140.0 { WHITE } else { DARK_TEXT }
}

/// Estimated width in pixels of `text` at `px` pixels high.
fn text_width(text: &str, px: f64) -> f64 {
    text.chars().count() as f64 * 0.55 * px
}

/// The pixel size at which `text` fits `width`: `largest` if it does, never below `smallest`.
fn fit(text: &str, width: f64, largest: f64, smallest: f64) -> f64 {
    let chars = text.chars().count().max(1) as f64;
    (width / (0.55 * chars)).clamp(smallest, largest)
}

/// `label` cut to at most `max_chars` characters, the last an ellipsis if it was cut.
fn shorten(label: &str, max_chars: usize) -> String {
    if label.chars().count() <= max_chars {
        return label.to_string();
    }
    let kept: String = label.chars().take(max_chars.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// Draws `words` at `at` (pixels), `px` pixels high.
fn text(
    area: &Area,
    words: &str,
    at: (f64, f64),
    px: f64,
    colour: RGBColor,
    pos: Pos,
) -> Result<()> {
    let style = TextStyle::from((FONT, px * 1.24).into_font())
        .color(&colour)
        .pos(pos);
    area.draw(&Text::new(
        words,
        (at.0.round() as i32, at.1.round() as i32),
        style,
    ))?;
    Ok(())
}

/// A filled rectangle from `(x0, y0)` to `(x1, y1)`, pixels.
fn rectangle(
    area: &Area,
    (x0, y0): (f64, f64),
    (x1, y1): (f64, f64),
    colour: RGBColor,
) -> Result<()> {
    let corners = [
        (x0.round() as i32, y0.round() as i32),
        (x1.round() as i32, y1.round() as i32),
    ];
    area.draw(&Rectangle::new(corners, colour.filled()))?;
    Ok(())
}

/// The sizes every matrix shares: the hosts are the same in each.
struct Geometry {
    hosts: usize,
    cell_width: f64,
    cell_height: f64,
    /// Pixel height of the host labels; None when the cells are too small to name their hosts.
    label_px: Option<f64>,
    /// The host labels, cut to [`LABEL_MAX`].
    labels: Vec<String>,
    /// Whether the column labels stand upright (too wide for their column).
    upright_columns: bool,
    /// Height of the column labels' band.
    header_height: f64,
    /// Left edge of the grid (after the row labels).
    grid_left: f64,
    width: f64,
}

impl Geometry {
    fn of(hosts: &[String]) -> Geometry {
        let n = hosts.len().max(1);
        let cell_width = CELL_MAX_WIDTH.min(GRID_MAX / n as f64);
        let cell_height = CELL_MAX_HEIGHT.min(cell_width);
        let label_px = Some(TEXT_PX.min(cell_height * 0.8)).filter(|px| *px >= SMALLEST_TEXT_PX);
        let labels: Vec<String> = match label_px {
            Some(px) => {
                let max_chars = (LABEL_MAX / (0.55 * px)).floor() as usize;
                hosts.iter().map(|host| shorten(host, max_chars)).collect()
            }
            None => Vec::new(),
        };
        let longest = labels
            .iter()
            .map(|label| text_width(label, label_px.unwrap_or(0.0)))
            .fold(0.0, f64::max);
        let upright_columns = longest > cell_width - 6.0;
        let header_height = match (label_px, upright_columns) {
            (None, _) => 4.0,
            (Some(_), true) => longest + 10.0,
            (Some(_), false) => LINE,
        };
        let grid_left = MARGIN
            + if label_px.is_some() {
                longest + 8.0
            } else {
                0.0
            };
        let width = (grid_left + cell_width * hosts.len() as f64 + MARGIN)
            .max(MIN_WIDTH)
            .ceil();
        Geometry {
            hosts: hosts.len(),
            cell_width,
            cell_height,
            label_px,
            labels,
            upright_columns,
            header_height,
            grid_left,
            width,
        }
    }

    /// A matrix's height: heading, legend, column labels, grid, notes, and the gap after it.
    fn block_height(&self, matrix: &Matrix) -> f64 {
        2.0 * LINE
            + 8.0
            + self.header_height
            + self.cell_height * self.hosts as f64
            + 6.0
            + LINE * matrix.notes.len() as f64
            + GAP_BETWEEN_MATRICES
    }

    /// Draws `matrix` from `top` down; returns where the next one starts.
    fn draw(&self, area: &Area, matrix: &Matrix, top: f64) -> Result<f64> {
        let usable = self.width - 2.0 * MARGIN;
        let left_centre = Pos::new(HPos::Left, VPos::Center);
        let heading_px = fit(&matrix.heading, usable, 14.0, 9.0);
        let heading_at = (MARGIN, top + LINE / 2.0);
        text(
            area,
            &matrix.heading,
            heading_at,
            heading_px,
            BLACK,
            left_centre,
        )?;
        self.draw_legend(area, matrix, top + LINE + 4.0 + LINE / 2.0)?;
        let grid_top = top + 2.0 * LINE + 8.0 + self.header_height;
        self.draw_labels(area, grid_top)?;
        self.draw_cells(area, matrix, grid_top)?;
        let mut y = grid_top + self.cell_height * self.hosts as f64 + 6.0;
        for note in &matrix.notes {
            let px = fit(note, usable, TEXT_PX, 8.0);
            text(
                area,
                note,
                (MARGIN, y + LINE / 2.0),
                px,
                DARK_TEXT,
                left_centre,
            )?;
            y += LINE;
        }
        Ok(y + GAP_BETWEEN_MATRICES)
    }

    /// The scale from the worst figure to the best, and swatches for the cells without one.
    fn draw_legend(&self, area: &Area, matrix: &Matrix, y: f64) -> Result<()> {
        let left_centre = Pos::new(HPos::Left, VPos::Center);
        let px = TEXT_PX;
        let mut x = MARGIN;
        let say = |x: &mut f64, words: &str, colour| -> Result<()> {
            text(area, words, (*x, y), px, colour, left_centre)?;
            *x += text_width(words, px) + 8.0;
            Ok(())
        };
        match matrix.range {
            Some((low, high)) => {
                let (worst, best) = match matrix.kind {
                    TestKind::Lat => (
                        format!("max {}", figure_with_unit(matrix.kind, high)),
                        format!("min {}", figure_with_unit(matrix.kind, low)),
                    ),
                    TestKind::Net | TestKind::Copy => (
                        format!("min {}", figure_with_unit(matrix.kind, low)),
                        format!("max {}", figure_with_unit(matrix.kind, high)),
                    ),
                };
                say(&mut x, &worst, DARK_TEXT)?;
                const STEPS: usize = 12;
                for step in 0..STEPS {
                    let colour = scale_colour(step as f64 / (STEPS - 1) as f64);
                    let x0 = x + step as f64 * 12.0;
                    rectangle(area, (x0, y - 6.0), (x0 + 12.0, y + 6.0), colour)?;
                }
                x += STEPS as f64 * 12.0 + 8.0;
                say(&mut x, &best, DARK_TEXT)?;
                say(&mut x, "(darker is better)", NOTE_COLOUR)?;
            }
            None => say(&mut x, "no figures", NOTE_COLOUR)?,
        }
        x += 8.0;
        for (present, colour, words) in [
            (Cell::Failed, FAILED_COLOUR, "failed"),
            (Cell::NotAsked, NOT_ASKED_COLOUR, "not measured"),
        ] {
            if !matrix.cells.contains(&present) {
                continue;
            }
            rectangle(area, (x, y - 6.0), (x + 12.0, y + 6.0), colour)?;
            x += 18.0;
            say(&mut x, words, DARK_TEXT)?;
        }
        Ok(())
    }

    /// The hosts: receivers above the columns, senders left of the rows.
    fn draw_labels(&self, area: &Area, grid_top: f64) -> Result<()> {
        let Some(px) = self.label_px else {
            return Ok(());
        };
        for (i, label) in self.labels.iter().enumerate() {
            let row_centre = grid_top + (i as f64 + 0.5) * self.cell_height;
            let right_centre = Pos::new(HPos::Right, VPos::Center);
            text(
                area,
                label,
                (self.grid_left - 6.0, row_centre),
                px,
                DARK_TEXT,
                right_centre,
            )?;
            let column_centre = self.grid_left + (i as f64 + 0.5) * self.cell_width;
            let foot = (column_centre, grid_top - 5.0);
            if self.upright_columns {
                // Read from the bottom up, starting just above the grid.
                let style = TextStyle::from((FONT, px * 1.24).into_font())
                    .color(&DARK_TEXT)
                    .pos(Pos::new(HPos::Left, VPos::Center))
                    .transform(FontTransform::Rotate270);
                let at = (foot.0.round() as i32, foot.1.round() as i32);
                area.draw(&Text::new(label.as_str(), at, style))?;
            } else {
                let centre_bottom = Pos::new(HPos::Center, VPos::Bottom);
                text(area, label, foot, px, DARK_TEXT, centre_bottom)?;
            }
        }
        Ok(())
    }

    /// Every cell, coloured, with its figure where it fits.
    fn draw_cells(&self, area: &Area, matrix: &Matrix, grid_top: f64) -> Result<()> {
        let n = self.hosts;
        // A white line between cells while they are big enough to spare it.
        let gap = if self.cell_height >= 12.0 { 1.0 } else { 0.0 };
        // One size for every figure of the matrix, the largest at which the longest fits.
        let room = self.cell_width - gap - 4.0;
        let tallest = self.cell_height * 0.6;
        let longest = matrix
            .cells
            .iter()
            .filter_map(|cell| match cell {
                Cell::Figure(value) => Some(figure_text(matrix.kind, *value)),
                _ => None,
            })
            .max_by_key(|words| words.chars().count())
            .unwrap_or_default();
        let figure_px = fit(&longest, room, TEXT_PX, 0.0).min(tallest);
        let edge = |start: f64, size: f64, i: usize| (start + i as f64 * size).round();
        for (at, cell) in matrix.cells.iter().enumerate() {
            let (row, column) = (at / n, at % n);
            let (x0, x1) = (
                edge(self.grid_left, self.cell_width, column),
                edge(self.grid_left, self.cell_width, column + 1),
            );
            let (y0, y1) = (
                edge(grid_top, self.cell_height, row),
                edge(grid_top, self.cell_height, row + 1),
            );
            if x1 <= x0 || y1 <= y0 {
                // Over GRID_MAX hosts: some cells are narrower than a pixel.
                continue;
            }
            let word = |words: &str| {
                let px = fit(words, room, TEXT_PX, 0.0).min(tallest);
                Some((words.to_string(), px))
            };
            let (fill, words, ink) = match *cell {
                Cell::Diagonal => (DIAGONAL_COLOUR, None, DARK_TEXT),
                Cell::NotAsked => (NOT_ASKED_COLOUR, None, DARK_TEXT),
                Cell::Failed => (FAILED_COLOUR, word("failed"), FAILED_TEXT_COLOUR),
                Cell::NoFigure => (DIAGONAL_COLOUR, word("?"), DARK_TEXT),
                Cell::Figure(value) => {
                    let range = matrix.range.unwrap_or((value, value));
                    let fill = scale_colour(goodness(matrix.kind, value, range));
                    let figure = Some((figure_text(matrix.kind, value), figure_px));
                    (fill, figure, text_colour_on(fill))
                }
            };
            rectangle(area, (x0, y0), (x1 - gap, y1 - gap), fill)?;
            let Some((words, px)) = words else { continue };
            if px >= SMALLEST_TEXT_PX {
                let centre = ((x0 + x1 - gap) / 2.0, (y0 + y1 - gap) / 2.0);
                text(
                    area,
                    &words,
                    centre,
                    px,
                    ink,
                    Pos::new(HPos::Center, VPos::Center),
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::SlowHost;
    use crate::mesh::fixtures::{measured, report as mesh_of, test};
    use crate::mesh::verdict::Side;

    /// Three hosts: net over tcp between every pair (a → c failed, b receives slowly, the
    /// verdict says so), then lat over tcp around a ring (a → b, b → c, c → a) only.
    fn report() -> MeshReport {
        let hosts: Vec<String> = ["host-a", "host-b", "host-c"].map(String::from).to_vec();
        let mut tests = Vec::new();
        for from in &hosts {
            for to in hosts.iter().filter(|to| *to != from) {
                let outcome = match (from.as_str(), to.as_str()) {
                    ("host-a", "host-c") => Outcome::Error("cannot connect to host-c".into()),
                    (_, "host-b") => measured(Some(117e6), None),
                    _ => measured(Some(1170e6), None),
                };
                tests.push(test(from, to, TestKind::Net, outcome));
            }
        }
        for (from, to, median_us) in [
            ("host-a", "host-b", 6.3),
            ("host-b", "host-c", 19.9),
            ("host-c", "host-a", 7.7),
        ] {
            let outcome = measured(None, Some(median_us));
            tests.push(test(from, to, TestKind::Lat, outcome));
        }
        MeshReport {
            slow_hosts: vec![SlowHost {
                test: TestKind::Net,
                via: TransportKind::Tcp,
                host: "host-b".into(),
                side: Side::Receives,
                best_bytes_per_sec: 117e6,
                others_median_bytes_per_sec: 1170e6,
            }],
            ..mesh_of(&["host-a", "host-b", "host-c"], tests)
        }
    }

    /// The document's text elements in order, after checking it is an SVG document.
    fn texts(svg: &str) -> Vec<String> {
        let document = roxmltree::Document::parse(svg).expect("well-formed XML");
        assert_eq!(document.root_element().tag_name().name(), "svg");
        document
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect()
    }

    /// The root element's width and height.
    fn size(svg: &str) -> (f64, f64) {
        let document = roxmltree::Document::parse(svg).unwrap();
        let root = document.root_element();
        let number = |name| root.attribute(name).unwrap().parse::<f64>().unwrap();
        (number("width"), number("height"))
    }

    fn position(texts: &[String], prefix: &str) -> usize {
        texts
            .iter()
            .position(|t| t.starts_with(prefix))
            .unwrap_or_else(|| panic!("no text {prefix:?} in {texts:?}"))
    }

    #[test]
    fn each_matrix_is_a_heat_map_titled_as_the_text_report_with_every_host_named() {
        let texts = texts(&mesh(&report()).unwrap());
        position(
            &texts,
            "xferbench mesh of 3 hosts, 9 tests, in rounds, no host in two tests at once",
        );
        let net = position(
            &texts,
            "net over tcp, 1 s each: the receiver's figure in Gb/s",
        );
        let lat = position(
            &texts,
            "lat over tcp, 1 s each: one way (half the round trip)",
        );
        assert!(net < lat, "{texts:?}");
        for host in ["host-a", "host-b", "host-c"] {
            // A row and a column in each of the two matrices.
            assert_eq!(texts.iter().filter(|t| *t == host).count(), 4, "{texts:?}");
        }
    }

    #[test]
    fn each_cell_shows_its_figure_and_a_failed_pair_is_marked() {
        let texts = texts(&mesh(&report()).unwrap());
        let count = |words: &str| texts.iter().filter(|t| *t == words).count();
        // Into host-b at 117 MB/s from its two senders, the three other pairs but one at
        // 1170 MB/s; host-a → host-c failed.
        assert_eq!(count("0.94"), 2, "{texts:?}");
        assert_eq!(count("9.36"), 3, "{texts:?}");
        assert_eq!(
            count("failed"),
            2,
            "a cell and the legend's swatch: {texts:?}"
        );
        for median in ["6.3", "19.9", "7.7"] {
            assert_eq!(count(median), 1, "{texts:?}");
        }
        position(&texts, "1 of 6 tests failed (the red-grey cells)");
    }

    #[test]
    fn the_legend_gives_the_lowest_and_highest_figure_at_their_ends_of_the_scale() {
        let texts = texts(&mesh(&report()).unwrap());
        let (net_worst, net_best) = (
            position(&texts, "min 0.94 Gb/s"),
            position(&texts, "max 9.36 Gb/s"),
        );
        assert!(net_worst < net_best, "{texts:?}");
        let (lat_worst, lat_best) = (
            position(&texts, "max 19.9 µs"),
            position(&texts, "min 6.3 µs"),
        );
        assert!(lat_worst < lat_best, "{texts:?}");
        // The lat matrix asked for a ring only: the other pairs are swatched as not measured.
        assert!(texts.iter().any(|t| t == "not measured"), "{texts:?}");
    }

    #[test]
    fn the_faster_pair_is_darker_and_for_latency_the_lower_one() {
        let luminance =
            |RGBColor(r, g, b): RGBColor| 0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64;
        let shade = |kind, value, range| luminance(scale_colour(goodness(kind, value, range)));
        let net = (0.94, 9.36);
        assert!(shade(TestKind::Net, 9.36, net) < shade(TestKind::Net, 5.0, net));
        assert!(shade(TestKind::Net, 5.0, net) < shade(TestKind::Net, 0.94, net));
        let lat = (6.3, 19.9);
        assert!(shade(TestKind::Lat, 6.3, lat) < shade(TestKind::Lat, 19.9, lat));
        assert_eq!(scale_colour(0.0), SCALE[0]);
        assert_eq!(scale_colour(1.0), SCALE[SCALE.len() - 1]);
        // A figure on its darkest fill is written in white.
        assert_eq!(text_colour_on(scale_colour(1.0)), WHITE);
    }

    #[test]
    fn a_failed_cell_is_filled_in_its_own_colour_and_the_diagonal_in_grey() {
        let svg = mesh(&report()).unwrap();
        let fill = |RGBColor(r, g, b): RGBColor| format!("fill=\"#{r:02X}{g:02X}{b:02X}\"");
        let failed = svg.matches(&fill(FAILED_COLOUR)).count();
        // One cell and the legend's swatch.
        assert_eq!(failed, 2, "{svg}");
        // Three in each of the two matrices.
        assert_eq!(svg.matches(&fill(DIAGONAL_COLOUR)).count(), 6, "{svg}");
    }

    #[test]
    fn the_slow_host_is_named_under_its_own_matrix() {
        let texts = texts(&mesh(&report()).unwrap());
        let verdict = position(
            &texts,
            "verdict: host-b receives at most 936 Mb/s from every sender, against a median of 9.36 Gb/s between the others",
        );
        let net = position(&texts, "net over tcp");
        let lat = position(&texts, "lat over tcp");
        assert!(net < verdict && verdict < lat, "{texts:?}");
        assert_eq!(texts.iter().filter(|t| t.starts_with("verdict")).count(), 1);
    }

    #[test]
    fn many_hosts_shrink_the_cells_within_the_cap_and_drop_the_text_that_cannot_fit() {
        let hosts: Vec<String> = (0..150).map(|i| format!("node{i:03}")).collect();
        let mut tests = Vec::new();
        for (i, from) in hosts.iter().enumerate() {
            for to in hosts.iter().filter(|to| *to != from) {
                let outcome = measured(Some(1e8 + i as f64 * 1e6), None);
                tests.push(test(from, to, TestKind::Net, outcome));
            }
        }
        let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let report = MeshReport {
            secs: 3.0,
            ..mesh_of(&names, tests)
        };
        let svg = mesh(&report).unwrap();
        let (width, height) = size(&svg);
        assert!(width <= GRID_MAX + 2.0 * MARGIN + 1.0, "{width}");
        assert!(height <= GRID_MAX + 200.0, "{height}");
        let texts = texts(&svg);
        assert!(!texts.iter().any(|t| t.starts_with("node")), "{texts:?}");
        position(&texts, "too many hosts to name each");
        position(&texts, "min 0.80 Gb/s");
        position(&texts, "max 1.99 Gb/s");
        // Cells of 8 pixels carry no figure.
        assert!(!texts.iter().any(|t| t == "0.80"), "{texts:?}");
    }

    #[test]
    fn a_long_host_name_is_cut_short_and_names_stand_upright_over_narrow_columns() {
        let mut report = report();
        let long = format!("{}.example", "x".repeat(80));
        report.hosts[0] = long.clone();
        let geometry = Geometry::of(&report.hosts);
        assert!(geometry.upright_columns);
        assert!(geometry.labels[0].ends_with('…'), "{:?}", geometry.labels);
        assert!(
            text_width(&geometry.labels[0], geometry.label_px.unwrap()) <= LABEL_MAX,
            "{:?}",
            geometry.labels
        );
        let svg = mesh(&report).unwrap();
        assert!(svg.contains("rotate(270"), "{svg}");
        assert!(!svg.contains(&long), "{svg}");
    }

    #[test]
    fn a_mesh_stopped_before_any_test_still_draws_and_says_so() {
        let mut report = report();
        report.tests.clear();
        report.slow_hosts.clear();
        report.interrupted = true;
        let texts = texts(&mesh(&report).unwrap());
        position(&texts, "xferbench mesh of 3 hosts, 0 tests");
        position(&texts, "interrupted: the tests under way were waited for");
        position(&texts, "no test ran");
    }
}
