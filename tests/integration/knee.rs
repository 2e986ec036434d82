//! A rate that falls for good after a burst (a knee) is found in a real copy's per-second
//! series: over a lab link whose shaper lets a burst through first (tbf with a large bucket,
//! drained at a peak rate), and not over a steady link.

use std::ffi::OsStr;

use crate::common::*;

/// The JSON report of a one-stream upload of a SIZE file over a lab link set up by `lab_args`;
/// None where the machine has no lab.
fn upload(lab_args: &[&str], size: &str) -> Option<serde_json::Value> {
    let _turn = rates_lock();
    let served =
        Hosts::with(lab_args).served_in_lab(&[], "skipped: needs root and iproute2 for a lab")?;
    let (_local, source) = scratch_path("burst.data");
    make_file(&source, size);
    let remote = served.remote("burst.data");
    let args = [
        "copy".as_ref(),
        source.as_os_str(),
        OsStr::new(&remote),
        "-P".as_ref(),
        "1".as_ref(),
        "--json".as_ref(),
    ];
    Some(json_report(&served.run(&args)))
}

#[test]
fn a_burst_through_a_shaper_then_its_rate_is_a_knee_where_the_burst_ran_out() {
    // 100 MB pass at up to 400 Mbit/s, then 80 Mbit/s (10 MB/s) holds: about 3 s, then 2 s.
    let lab = [
        "--rate",
        "80mbit",
        "--burst",
        "100mb",
        "--peakrate",
        "400mbit",
    ];
    let Some(report) = upload(&lab, "150M") else {
        return;
    };
    let copy = &report["measurement"];
    let knee = &copy["knee"];
    assert!(knee.is_object(), "no knee in {copy:#}");
    let sustained = number(&knee["sustained_bytes_per_sec"]) / 1e6;
    let burst = number(&knee["burst_bytes_per_sec"]) / 1e6;
    assert!(
        (7.0..=11.0).contains(&sustained),
        "sustained {sustained} MB/s: {copy:#}"
    );
    assert!(burst > 1.5 * sustained, "burst {burst} MB/s: {copy:#}");
    let at = number(&knee["at_secs"]);
    assert!((1.5..=5.0).contains(&at), "knee at {at} s: {copy:#}");
}

#[test]
fn a_steady_link_has_no_knee() {
    let Some(report) = upload(&["--rate", "200mbit"], "100M") else {
        return;
    };
    let copy = &report["measurement"];
    assert!(copy["knee"].is_null(), "a knee on a steady link: {copy:#}");
    assert!(copy["intervals"].as_array().unwrap().len() >= 4, "{copy:#}");
}
