//! `--json-stream`: one JSON object a line on stdout as things happen, as iperf3's
//! `--json-stream` does: `start`, each `stage` heading (`run`), each phase's `begin`, every
//! `interval` (a network test's per-second line, or a phase's bytes each second), each phase's
//! `end`, the `verdict` (`run`), and last `end` with the whole report `-J` prints. Each line is
//! flushed as it is written, so a reader sees it at once.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

use super::{HostInfo, SCHEMA};
use crate::measure::{Counter, Role, Tick, Watcher};

/// How often a phase's bytes are told (`interval` lines of a copy or a disk test).
const INTERVAL: Duration = Duration::from_secs(1);

/// The stream of one command's events, written to stdout.
pub struct JsonStream {
    command: String,
    started: Instant,
    /// The phase under way: its name, and the thread telling its bytes each second.
    phase: Mutex<Option<Phase>>,
}

struct Phase {
    label: String,
    counter: Counter,
    begun: Instant,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<()>>,
    /// A network test tells its own intervals (`tick`): the sampler then keeps quiet.
    ticking: Arc<AtomicBool>,
}

impl JsonStream {
    /// Starts the stream of `command`: writes its `start` line.
    pub fn start(command: &str) -> JsonStream {
        let stream = JsonStream {
            command: command.to_string(),
            started: Instant::now(),
            phase: Mutex::new(None),
        };
        emit(&json!({
            "event": "start",
            "schema": SCHEMA,
            "command": command,
            "host": HostInfo::current(),
            "time": unix_now(),
        }));
        stream
    }

    /// `run`'s verdict, as its report gives it.
    pub fn verdict(&self, verdict: &impl Serialize) {
        emit(&json!({"event": "verdict", "secs": self.secs(), "verdict": verdict}));
    }

    /// The last line: the report `-J` prints, whole.
    pub fn end(&self, report: &impl Serialize) {
        self.close_phase();
        let envelope: Value = serde_json::from_str(&super::json::render(&self.command, report))
            .expect("a report is JSON");
        emit(&json!({"event": "end", "secs": self.secs(), "report": envelope}));
    }

    fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Ends the phase under way, if one is, with its `end` line.
    fn close_phase(&self) {
        let phase = self.phase.lock().expect("stream phase lock").take();
        if let Some(mut phase) = phase {
            phase.stop.store(true, Ordering::Relaxed);
            if let Some(sampler) = phase.sampler.take() {
                let _ = sampler.join();
            }
            let (bytes, secs) = (phase.counter.get(), phase.begun.elapsed().as_secs_f64());
            emit(&json!({
                "event": "end_phase",
                "label": phase.label,
                "bytes": bytes,
                "secs": secs,
                "bytes_per_sec": bytes as f64 / secs.max(f64::MIN_POSITIVE),
            }));
        }
    }
}

impl Watcher for JsonStream {
    fn begin(&self, label: &str, total: u64, counter: &Counter) {
        self.close_phase();
        emit(&json!({
            "event": "begin",
            "secs": self.secs(),
            "label": label,
            "total_bytes": total,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let ticking = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (stop, ticking, counter, label) = (
                stop.clone(),
                ticking.clone(),
                counter.clone(),
                label.to_string(),
            );
            std::thread::spawn(move || sample(&label, &counter, &stop, &ticking))
        };
        *self.phase.lock().expect("stream phase lock") = Some(Phase {
            label: label.to_string(),
            counter: counter.clone(),
            begun: Instant::now(),
            stop,
            sampler: Some(sampler),
            ticking,
        });
    }

    fn end(&self) {
        self.close_phase();
    }

    fn tick(&self, tick: &Tick) {
        if let Some(phase) = self.phase.lock().expect("stream phase lock").as_ref() {
            phase.ticking.store(true, Ordering::Relaxed);
        }
        let streams: Vec<Value> = tick
            .streams
            .iter()
            .map(|stream| {
                json!({
                    "role": match stream.role {
                        Role::Send => "sender",
                        Role::Receive => "receiver",
                    },
                    "bytes": stream.bytes,
                    "bytes_per_sec": stream.bytes as f64 / tick.secs.max(f64::MIN_POSITIVE),
                    "retransmits": stream.retransmits,
                    "cwnd_bytes": stream.cwnd_bytes,
                })
            })
            .collect();
        let received: u64 = tick
            .streams
            .iter()
            .filter(|stream| stream.role == Role::Receive)
            .map(|stream| stream.bytes)
            .sum();
        let sent: u64 = tick
            .streams
            .iter()
            .filter(|stream| stream.role == Role::Send)
            .map(|stream| stream.bytes)
            .sum();
        emit(&json!({
            "event": "interval",
            "start_secs": tick.start_secs,
            "secs": tick.secs,
            "omitted": tick.omitted,
            "streams": streams,
            "sum": {
                "sent_bytes": sent,
                "sent_bytes_per_sec": sent as f64 / tick.secs.max(f64::MIN_POSITIVE),
                "received_bytes": received,
                "received_bytes_per_sec": received as f64 / tick.secs.max(f64::MIN_POSITIVE),
            },
        }));
    }

    fn heading(&self, title: &str) {
        emit(&json!({"event": "stage", "secs": self.secs(), "title": title}));
    }
}

/// Tells a phase's bytes each [`INTERVAL`] until `stop`, unless the phase ticks on its own.
fn sample(label: &str, counter: &Counter, stop: &AtomicBool, ticking: &AtomicBool) {
    let begun = Instant::now();
    let mut last = (Duration::ZERO, counter.get());
    loop {
        let next = last.0 + INTERVAL;
        // Short sleeps, so that the phase's end is not held up by a second.
        while begun.elapsed() < next {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let now = (begun.elapsed(), counter.get());
        if !ticking.load(Ordering::Relaxed) {
            let secs = (now.0 - last.0).as_secs_f64();
            let bytes = now.1.saturating_sub(last.1);
            emit(&json!({
                "event": "interval",
                "label": label,
                "start_secs": last.0.as_secs_f64(),
                "secs": secs,
                "bytes": bytes,
                "bytes_per_sec": bytes as f64 / secs,
                "done_bytes": now.1,
            }));
        }
        last = now;
    }
}

/// One line on stdout, flushed.
fn emit(event: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{event}");
    let _ = out.flush();
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// A watcher (the progress on stderr) and, when streaming, the stream beside it.
pub struct Beside<'a> {
    pub stream: Option<&'a JsonStream>,
    pub watcher: &'a dyn Watcher,
}

impl Beside<'_> {
    fn each(&self, call: impl Fn(&dyn Watcher)) {
        if let Some(stream) = self.stream {
            call(stream);
        }
        call(self.watcher);
    }
}

impl Watcher for Beside<'_> {
    fn begin(&self, label: &str, total: u64, counter: &Counter) {
        self.each(|watcher| watcher.begin(label, total, counter));
    }

    fn begin_files(
        &self,
        label: &str,
        total: u64,
        counter: &Counter,
        total_files: u64,
        files: &Counter,
    ) {
        self.each(|watcher| watcher.begin_files(label, total, counter, total_files, files));
    }

    fn end(&self) {
        self.each(|watcher| watcher.end());
    }

    fn tick(&self, tick: &Tick) {
        self.each(|watcher| watcher.tick(tick));
    }

    fn heading(&self, title: &str) {
        self.each(|watcher| watcher.heading(title));
    }
}
