//! The RDMA path on a real soft-RoCE device: `scripts/lab-vm.sh` boots a small VM with rxe0,
//! and serve and the client both run in it (rxe does not span network namespaces). The VM sees
//! a scratch directory of this machine at the same path, so files are made and checked here.
//!
//! The VM tests run when XFERBENCH_RDMA_VM=1 (`.ci/run` sets it after `lab-vm.sh setup`); one
//! VM boots at a time.

use crate::common::vm::{self, Guest};
use crate::common::*;

fn vm_enabled() -> bool {
    vm::enabled("XFERBENCH_RDMA_VM", "the soft-RoCE tests")
}

#[test]
fn a_machine_without_an_rdma_device_is_told_so_in_one_line() {
    let out = run_command(command(["net", "127.0.0.1:9", "--via", "rdma", "-t", "1"]));
    assert_failed_cleanly(&out);
    assert!(
        out.stderr.contains("no RDMA device found") && out.stderr.contains("ibv_devices"),
        "{}",
        out.stderr
    );
}

#[test]
fn copies_round_trip_byte_for_byte_over_soft_roce_both_ways() {
    if !vm_enabled() {
        return;
    }
    let guest = Guest::new();
    // Odd sizes, more chunks than slots: credits must flow for the copy to finish.
    make_file(&guest.path("src.bin"), "7340155");
    std::fs::write(guest.path("empty.bin"), b"").unwrap();
    guest.run(
        r#"
serve 5301
step up "$X" copy "$D/src.bin" 127.0.0.1:up.bin --via rdma --verify --iodepth 4
step down "$X" copy 127.0.0.1:up.bin "$D/down.bin" --via rdma --verify --iodepth 3
step empty "$X" copy "$D/empty.bin" 127.0.0.1:empty.bin --via rdma --verify
step small_chunks "$X" copy "$D/src.bin" 127.0.0.1:up2.bin --via rdma --bs 256K -J
kill $SERVED
"#,
    );
    let up = guest.succeeded("up");
    assert!(
        up.stdout.contains("over rdma") && up.stdout.contains("verified"),
        "{}",
        up.stdout
    );
    assert_same_content(&guest.path("src.bin"), &guest.root(5301).join("up.bin"));
    guest.succeeded("down");
    assert_same_content(&guest.path("src.bin"), &guest.path("down.bin"));
    guest.succeeded("empty");
    assert_eq!(
        std::fs::metadata(guest.root(5301).join("empty.bin"))
            .unwrap()
            .len(),
        0
    );
    let report = json_report(&guest.step("small_chunks"));
    assert_eq!(report["path"], "rdma");
    let conditions = &report["measurement"]["conditions"];
    assert_eq!(conditions["block_size"], 256 << 10);
    assert!(
        conditions["device"].as_str().unwrap().contains("rxe0"),
        "{conditions}"
    );
    assert_same_content(&guest.path("src.bin"), &guest.root(5301).join("up2.bin"));
    assert_no_leftovers(&guest.root(5301));
}

#[test]
fn net_reports_write_bandwidth_and_latency_over_soft_roce() {
    if !vm_enabled() {
        return;
    }
    let guest = Guest::new();
    guest.run(
        r#"
serve 5301
step json "$X" net 127.0.0.1 --via rdma -t 1 -s 64K -Q 16 -J
step text "$X" net 127.0.0.1 --via rdma -t 1
step reverse "$X" net 127.0.0.1 --via rdma -t 1 -R
step streams "$X" net 127.0.0.1 --via rdma -t 1 -P 2
step lat "$X" lat 127.0.0.1 --via rdma -n 300 -J
step lat_size "$X" lat 127.0.0.1 --via rdma -s 64
step lat_time "$X" lat 127.0.0.1 --via rdma -t 1 -J
kill $SERVED
mkdir -p /tmp/run
step run "$X" run --via tcp,rdma --size 16M -t 1 --files 0 --dir /tmp/run -J
"#,
    );
    let report = json_report(&guest.step("json"));
    let up = &report["directions"][0];
    assert!(up["receiver"]["bytes"].as_u64().unwrap() > 0, "{up}");
    assert_eq!(up["sender"]["bytes"], up["receiver"]["bytes"]);
    let conditions = &up["receiver"]["conditions"];
    assert_eq!(conditions["queue_depth"], 16);
    assert_eq!(conditions["block_size"], 65536);
    // The automatic GID: RoCE v2, from dummy0's IPv4 address.
    let device = conditions["device"].as_str().unwrap();
    assert!(
        device.contains("rxe0") && device.contains("RoCE v2 ::ffff:192.0.2.1"),
        "{device}"
    );
    assert!(conditions["mtu"].as_u64().unwrap() >= 256);
    // The rate runs from the first acknowledgment to the last inside -t: never longer than -t,
    // and over no more bytes than were acknowledged.
    let secs = up["receiver"]["secs"].as_f64().unwrap();
    assert!(secs > 0.0 && secs <= 1.0, "{up}");
    let acknowledged = up["streams"][0]["receiver_bytes"].as_u64().unwrap();
    assert!(
        acknowledged >= up["receiver"]["bytes"].as_u64().unwrap(),
        "{up}"
    );
    let latency = &report["latency"];
    assert_eq!(latency["samples"], 1000);
    crate::common::assert_latency_ordered(latency);
    let text = guest.succeeded("text");
    assert!(
        text.stdout.contains("latency (") && text.stdout.contains("p99"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("WRITEs in flight"), "{}", text.stdout);
    guest.failed_saying("reverse", &["-R"]);
    guest.failed_saying("streams", &["one queue pair", "-Q"]);
    let lat = json_report(&guest.step("lat"));
    assert_eq!(lat["path"], "rdma");
    assert_eq!(lat["latency"]["samples"], 300);
    crate::common::assert_latency_ordered(&lat["latency"]);
    guest.failed_saying("lat_size", &["-s 8"]);
    // -t: timed round trips for a second, then the stop mark ends the server's answers (else it
    // would wait for another round and refuse the end of the test).
    let lat = json_report(&guest.step("lat_time"));
    let samples = lat["latency"]["samples"].as_u64().unwrap();
    assert!(samples > 0 && samples != 1000, "{lat:#}");
    let timed_secs = 2.0 * lat["latency"]["mean_us"].as_f64().unwrap() * samples as f64 / 1e6;
    assert!((0.5..1.2).contains(&timed_secs), "{timed_secs} s: {lat:#}");
    assert!(lat["cpu"]["remote"].is_object(), "{lat:#}");
    let run = json_report(&guest.step("run"));
    let rdma = run["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "rdma")
        .unwrap_or_else(|| panic!("no rdma row: {run:#}"));
    assert!(
        rdma["copy"]["measurements"][0]["bytes"].as_u64().unwrap() == 16 << 20,
        "{rdma:#}"
    );
    assert!(
        rdma["network"]["measurements"][0]["bytes"]
            .as_u64()
            .unwrap()
            > 0,
        "{rdma:#}"
    );
    assert!(
        rdma["sentence"].as_str().unwrap().starts_with("rdma:"),
        "{rdma:#}"
    );
    // A latency figure per path: the polled WRITE ping-pong for rdma.
    for path in run["paths"].as_array().unwrap() {
        assert_eq!(path["latency"]["samples"], 1000, "{path:#}");
    }
    assert!(
        rdma["latency"]["what"]
            .as_str()
            .unwrap()
            .contains("RDMA WRITE, polled"),
        "{rdma:#}"
    );
}

#[test]
fn bad_devices_gids_and_memory_limits_get_one_clear_line() {
    if !vm_enabled() {
        return;
    }
    let guest = Guest::new();
    make_file(&guest.path("src.bin"), "4M");
    guest.run(
        r#"
serve 5301
serve 5302 --ib-dev nosuch0
step bad_dev "$X" net 127.0.0.1 --via rdma --ib-dev mlx5_9 -t 1
step bad_gid "$X" net 127.0.0.1 --via rdma --gid-index 77 -t 1
step peer_dev "$X" copy "$D/src.bin" 127.0.0.1:5302:x.bin --via rdma
chmod 666 /dev/infiniband/* 2>/dev/null
chmod 755 "$D"; chmod 644 "$D/src.bin"
step memlock setpriv --reuid=65534 --regid=65534 --clear-groups bash -c 'ulimit -l 64; exec "$X" copy "$D/src.bin" 127.0.0.1:ml.bin --via rdma'
"#,
    );
    guest.failed_saying("bad_dev", &["no RDMA device named mlx5_9", "rxe0"]);
    guest.failed_saying("bad_gid", &["GID index 77", "valid indexes"]);
    guest.failed_saying("peer_dev", &["on the server", "nosuch0"]);
    guest.failed_saying("memlock", &["memory-lock limit", "ulimit -l"]);
    assert_no_leftovers(&guest.root(5301));
    assert_no_leftovers(&guest.root(5302));
}

#[test]
fn a_peer_killed_mid_copy_fails_the_copy_and_leaves_no_file_under_its_name() {
    if !vm_enabled() {
        return;
    }
    let guest = Guest::new();
    make_file(&guest.path("big.bin"), "192M");
    guest.run(
        r#"
# Each kill comes once the copy's partial file exists: the copy is under way. Small chunks, one
# at a time, keep it under way long enough.
started() { for _ in $(seq 400); do [ -e "$1" ] && return 0; sleep 0.025; done; echo "no $1" >&2; }
slow="--via rdma --bs 64K --iodepth 1"

# The server is killed mid-upload: the client must fail, not hang.
serve 5301
"$X" copy "$D/big.bin" 127.0.0.1:big.bin $slow >"$D/server_killed.out" 2>"$D/server_killed.err" &
client=$!
started "$D/root5301/.big.bin.xferbench-partial"
kill -9 $SERVED
wait $client; echo $? >"$D/server_killed.code"

# The client is killed mid-upload: the server removes its partial file.
serve 5302
"$X" copy "$D/big.bin" 127.0.0.1:5302:big.bin $slow >/dev/null 2>&1 &
client=$!
started "$D/root5302/.big.bin.xferbench-partial"
kill -9 $client
for _ in $(seq 100); do grep -q 'big.bin.*:' "$D/serve5302.log" && break; sleep 0.1; done

# The server is killed mid-download: the client fails and keeps no file.
serve 5303
cp "$D/big.bin" "$D/root5303/big.bin"
"$X" copy 127.0.0.1:5303:big.bin "$D/down.bin" $slow >"$D/download_killed.out" 2>"$D/download_killed.err" &
client=$!
started "$D/.down.bin.xferbench-partial"
kill -9 $SERVED
wait $client; echo $? >"$D/download_killed.code"
"#,
    );
    let out = guest.step("server_killed");
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert_failed_cleanly(&out);
    assert!(!guest.root(5301).join("big.bin").exists());
    assert!(
        wait_until(std::time::Duration::from_secs(5), || leftovers(
            &guest.root(5302)
        )
        .is_empty()
            && !guest.root(5302).join("big.bin").exists()),
        "the server kept {:?}",
        entries(&guest.root(5302))
    );
    let log = std::fs::read_to_string(guest.path("serve5302.log")).unwrap();
    assert!(
        log.contains("rdma receive big.bin") && !log.contains("done in"),
        "{log}"
    );
    let out = guest.step("download_killed");
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert_failed_cleanly(&out);
    assert!(!guest.path("down.bin").exists());
    assert_no_leftovers(guest.dir.path());
}
