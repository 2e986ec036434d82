//! Progress on stderr, in one place: an indicatif bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::measure::{Counter, Watcher};
use crate::units::{Rate, format_bytes};

/// How the user wants to be kept informed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A live bar (stderr is a terminal).
    Bar,
    /// A line every few seconds (stderr is a file or pipe, e.g. CI logs).
    Lines,
    /// Nothing (`--quiet`).
    Quiet,
}

impl Style {
    /// A bar on a terminal, lines elsewhere, nothing when quiet.
    pub fn detect(quiet: bool) -> Style {
        if quiet {
            Style::Quiet
        } else if std::io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Lines
        }
    }
}

/// How often the bar is redrawn from the counter.
const BAR_TICK: Duration = Duration::from_millis(100);
/// How often a plain progress line is printed.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Shows the progress of each phase a measurement announces.
pub struct Progress {
    style: Style,
    running: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl Progress {
    pub fn new(style: Style) -> Progress {
        Progress {
            style,
            running: Mutex::new(None),
        }
    }
}

/// Files done of how many, for a tree copy's bar.
type Files = Option<(u64, Counter)>;

impl Progress {
    fn start(&self, label: &str, total: u64, counter: &Counter, files: Files) {
        self.end();
        let (stop, stopped) = mpsc::channel::<()>();
        let (style, label, counter) = (self.style, label.to_string(), counter.clone());
        let worker = match style {
            Style::Quiet => return,
            Style::Bar => {
                std::thread::spawn(move || draw_bar(&label, total, &counter, files, &stopped))
            }
            Style::Lines => {
                std::thread::spawn(move || print_lines(&label, total, &counter, files, &stopped))
            }
        };
        *self.running.lock().expect("progress lock") = Some((stop, worker));
    }
}

/// "12/1000 files" when a phase counts files.
fn files_text(files: &Files) -> String {
    match files {
        Some((total, done)) => format!("{}/{total} files", done.get()),
        None => String::new(),
    }
}

impl Watcher for Progress {
    fn begin(&self, label: &str, total: u64, counter: &Counter) {
        self.start(label, total, counter, None);
    }

    fn begin_files(
        &self,
        label: &str,
        total: u64,
        counter: &Counter,
        total_files: u64,
        files: &Counter,
    ) {
        self.start(label, total, counter, Some((total_files, files.clone())));
    }

    fn heading(&self, title: &str) {
        if self.style != Style::Quiet {
            eprintln!("== {title}");
        }
    }

    fn end(&self) {
        if let Some((stop, worker)) = self.running.lock().expect("progress lock").take() {
            drop(stop);
            let _ = worker.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.end();
    }
}

fn draw_bar(
    label: &str,
    total: u64,
    counter: &Counter,
    files: Files,
    stopped: &mpsc::Receiver<()>,
) {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let template = "{prefix:>6} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} {msg} ETA {eta}";
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(BAR_TICK) {
        bar.set_position(counter.get());
        bar.set_message(files_text(&files));
    }
    bar.set_position(counter.get());
    bar.finish_and_clear();
}

fn print_lines(
    label: &str,
    total: u64,
    counter: &Counter,
    files: Files,
    stopped: &mpsc::Receiver<()>,
) {
    let start = Instant::now();
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(LINE_EVERY) {
        let done = counter.get();
        let percent = if total > 0 {
            done as f64 * 100.0 / total as f64
        } else {
            0.0
        };
        let files = match files_text(&files) {
            text if text.is_empty() => text,
            text => format!(", {text}"),
        };
        eprintln!(
            "{label}: {} of {} ({percent:.0}%) at {}{files}",
            format_bytes(done),
            format_bytes(total),
            Rate::new(done, start.elapsed()).bytes_text()
        );
    }
}

/// Prints `net`'s interval lines on stdout as they close, like iperf3 (nothing with -J).
pub struct IntervalLines {
    pub bidir: bool,
    pub enabled: bool,
    header_shown: std::sync::atomic::AtomicBool,
}

impl IntervalLines {
    pub fn new(bidir: bool, enabled: bool) -> IntervalLines {
        IntervalLines {
            bidir,
            enabled,
            header_shown: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Watcher for IntervalLines {
    fn begin(&self, _label: &str, _total: u64, _counter: &Counter) {}
    fn end(&self) {}
    fn tick(&self, tick: &crate::transport::memory::Tick) {
        use std::io::Write;
        if !self.enabled {
            return;
        }
        let mut out = std::io::stdout().lock();
        if !self
            .header_shown
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            let tcp_columns = tick.streams.iter().any(|s| s.retransmits.is_some());
            let _ = write!(
                out,
                "{}",
                crate::report::text::net_header(self.bidir, tcp_columns)
            );
        }
        let _ = write!(out, "{}", crate::report::text::net_tick(tick, self.bidir));
        let _ = out.flush();
    }
}
