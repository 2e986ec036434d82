//! `xferbench lat`: round trips through serve, one way = half the round trip.

use crate::common::*;

#[test]
fn lat_over_tcp_reports_ordered_figures_of_every_round_trip() {
    let server = Hosts::two().served(&[]);
    let addr = server.addr.to_string();
    let args = ["lat", &addr, "-n", "300", "-s", "1K", "-J"].map(std::ffi::OsStr::new);
    let report = json_report(&server.run(&args));
    assert_eq!(report["path"], "tcp", "{report:#}");
    assert_eq!(report["size"], 1024);
    let latency = &report["latency"];
    assert_eq!(latency["samples"], 300);
    crate::common::assert_latency_ordered(latency);
    assert!(report["cpu"]["remote"].is_object(), "{report:#}");
}

#[test]
fn lat_with_a_time_runs_round_trips_for_that_long_instead_of_a_count() {
    let server = Hosts::two().served(&[]);
    let addr = server.addr.to_string();
    let args = ["lat", &addr, "-t", "1", "-J"].map(std::ffi::OsStr::new);
    let started = std::time::Instant::now();
    let report = json_report(&server.run(&args));
    let took = started.elapsed().as_secs_f64();
    let latency = &report["latency"];
    let samples = latency["samples"].as_u64().unwrap();
    // Not the default -n 1000: as many round trips as fit in the second.
    assert!(samples > 0 && samples != 1000, "{latency}");
    // The timed round trips fill the second: twice the mean one way, times the samples.
    let timed_secs = 2.0 * latency["mean_us"].as_f64().unwrap() * samples as f64 / 1e6;
    assert!(
        (0.5..1.2).contains(&timed_secs),
        "{timed_secs} s timed: {latency}"
    );
    assert!(took >= 1.0, "the command took {took} s");
}

#[test]
fn lat_takes_a_count_or_a_time_not_both() {
    let (code, _, stderr) = run(["lat", "127.0.0.1:9", "-n", "10", "-t", "1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let (code, _, stderr) = run(["lat", "127.0.0.1:9", "-t", "0"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn lat_refuses_a_zero_count() {
    let (code, _, stderr) = run(["lat", "127.0.0.1:9", "-n", "0"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn lat_of_one_round_trip_gives_one_figure_and_says_the_percentiles_precision() {
    let server = Hosts::two().served(&[]);
    let addr = server.addr.to_string();
    let args = ["lat", &addr, "-n", "1", "-J"].map(std::ffi::OsStr::new);
    let report = json_report(&server.run(&args));
    let latency = &report["latency"];
    assert_eq!(latency["samples"], 1, "{latency}");
    let min = &latency["min_us"];
    for figure in ["median_us", "mean_us", "p99_us", "p999_us", "max_us"] {
        assert_eq!(&latency[figure], min, "{figure}: {latency}");
    }
    assert_eq!(latency["quantile_precision_percent"], 0.1, "{latency}");
    let text = server.run(&["lat", &addr, "-n", "1"].map(std::ffi::OsStr::new));
    assert!(
        text.stdout.contains("percentiles within 0.1%"),
        "{}",
        text.stdout
    );
}
