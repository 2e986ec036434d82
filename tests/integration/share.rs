//! Mounted shares: a real SMB or NFS server in the lab VM (`scripts/lab-vm.sh run --nas`), its
//! share mounted in the guest at `$LAB_NAS_MNT` (198.51.100.2 across the veth lab-nas).
//!
//! The VM tests run when XFERBENCH_LAB_VM=1 (`.ci/run` sets it when `lab-vm.sh check --nas`
//! passes); one VM boots at a time.

use serde_json::Value;

use crate::common::vm::{self, Guest};
use crate::common::*;

fn vm_enabled() -> bool {
    vm::enabled(
        "XFERBENCH_LAB_VM",
        "the tests against real SMB and NFS shares",
    )
}

/// Runs `disk` on the guest's share, as JSON and as text; returns the JSON's mount facts (the
/// same on every figure) and the text's line about them.
fn facts_on_the_share(guest: &Guest) -> (Value, String) {
    guest.run(
        r#"
step json "$X" -q disk "$LAB_NAS_MNT" --size 16M --json
step text "$X" -q disk "$LAB_NAS_MNT" --size 16M
"#,
    );
    let report = json_report(&guest.step("json"));
    let figures = report["measurements"].as_array().unwrap();
    assert_eq!(figures.len(), 2, "{report:#}");
    let mount = figures[0]["conditions"]["mount"].clone();
    assert_eq!(figures[1]["conditions"]["mount"], mount, "{report:#}");
    assert_eq!(mount["mount_point"], "/mnt/nas", "{mount:#}");
    assert_eq!(mount["server"], "198.51.100.2", "{mount:#}");
    assert_eq!(mount["interface"]["name"], "lab-nas", "{mount:#}");
    assert_eq!(mount["interface"]["mtu"], 1500, "{mount:#}");
    // A veth's speed is made up: unknown.
    assert!(mount["interface"]["speed_mbit_s"].is_null(), "{mount:#}");
    assert!(mount["device"].is_null(), "{mount:#}");
    assert!(
        mount.get("kernel").is_none(),
        "host.kernel says it: {mount:#}"
    );
    let text = guest.succeeded("text").stdout;
    let line = text
        .lines()
        .find(|line| line.trim_start().starts_with("on /mnt/nas: "))
        .unwrap_or_else(|| panic!("no line about the share:\n{text}"));
    assert!(
        line.contains("via lab-nas (MTU 1500, speed unknown); kernel 6.1"),
        "{line}"
    );
    (mount, line.trim().to_string())
}

#[test]
fn disk_on_an_smb_share_says_cifs_its_server_version_and_cache_mode() {
    if !vm_enabled() {
        return;
    }
    let (mount, line) = facts_on_the_share(&Guest::with_nas("smb"));
    assert_eq!(mount["fs_type"], "cifs", "{mount:#}");
    assert_eq!(mount["source"], "//198.51.100.2/share", "{mount:#}");
    assert_eq!(mount["share"], "share", "{mount:#}");
    let options = &mount["options"];
    assert_eq!(options["vers"], "3.1.1", "{mount:#}");
    assert_eq!(options["cache"], "none", "{mount:#}");
    assert_eq!(options["multichannel"], false, "{mount:#}");
    assert!(
        line.starts_with("on /mnt/nas: cifs vers=3.1.1 from //198.51.100.2/share (")
            && line.contains("cache=none"),
        "{line}"
    );
    eprintln!("{line}");
}

#[test]
fn disk_on_an_nfs_share_says_nfs4_its_export_version_and_connections() {
    if !vm_enabled() {
        return;
    }
    let (mount, line) = facts_on_the_share(&Guest::with_nas("nfs").nas_mount_opts("nconnect=2"));
    assert_eq!(mount["fs_type"], "nfs4", "{mount:#}");
    assert_eq!(mount["source"], "198.51.100.2:/", "{mount:#}");
    assert_eq!(mount["share"], "/", "{mount:#}");
    let options = &mount["options"];
    assert_eq!(options["vers"], "4.2", "{mount:#}");
    assert_eq!(options["nconnect"], 2, "{mount:#}");
    assert_eq!(options["hard"], true, "{mount:#}");
    assert!(options["cache"].is_null(), "{mount:#}");
    assert!(
        line.starts_with("on /mnt/nas: nfs4 vers=4.2 from 198.51.100.2:/ (nconnect=2, "),
        "{line}"
    );
    eprintln!("{line}");
}

/// Copies an odd-sized file and an empty one to the guest's share and back with `--verify`;
/// checks every landed file by content (the NAS's own copy under its export too) and that the
/// figures say the share's file system. `fs_type` is what mountinfo calls the share.
fn round_trips_through_the_share(kind: &str, fs_type: &str) {
    let guest = Guest::with_nas(kind);
    let odd = guest.path("odd.src");
    make_file(&odd, &(3 * 1048576 + 4097).to_string());
    std::fs::write(guest.path("empty.src"), b"").unwrap();
    guest.run(
        r#"
for f in odd empty; do
  step "up_$f" "$X" -q copy "$D/$f.src" "$LAB_NAS_MNT/$f.img" --verify --json
  step "down_$f" "$X" -q copy "$LAB_NAS_MNT/$f.img" "$D/$f.back" --verify --json
  step "nas_$f" cp "$LAB_NAS_EXPORT/$f.img" "$D/$f.nas"
done
step missing_dir "$X" -q copy "$D/odd.src" "$LAB_NAS_MNT/no/such/dir/" --json
"#,
    );
    for name in ["odd", "empty"] {
        let source = guest.path(&format!("{name}.src"));
        for step in [format!("up_{name}"), format!("down_{name}")] {
            let report = json_report(&guest.succeeded(&step));
            assert_eq!(report["path"], "local", "{step}: {report:#}");
            let verify = &report["verify"];
            assert_eq!(verify["matched"], true, "{step}: {report:#}");
            // Only the upload's landing is on the share; its re-read may be the server's cache.
            if step.starts_with("up_") {
                assert_eq!(
                    verify["reread"]["network_fs"], fs_type,
                    "{step}: {report:#}"
                );
                let mount = &report["measurement"]["conditions"]["mount"];
                assert_eq!(mount["fs_type"], fs_type, "{step}: {report:#}");
            }
        }
        guest.succeeded(&format!("nas_{name}"));
        assert_same_content(&source, &guest.path(&format!("{name}.nas")));
        assert_same_content(&source, &guest.path(&format!("{name}.back")));
    }
    guest.failed_saying("missing_dir", &["does not exist"]);
}

#[test]
fn copy_to_and_from_an_smb_share_lands_every_byte_and_says_where_the_reread_came_from() {
    if vm_enabled() {
        round_trips_through_the_share("smb", "cifs");
    }
}

#[test]
fn copy_to_and_from_an_nfs_share_lands_every_byte_and_says_where_the_reread_came_from() {
    if vm_enabled() {
        round_trips_through_the_share("nfs", "nfs4");
    }
}

// The issue expected cifs to refuse O_DIRECT under cache=loose; the guest's 6.1 kernel takes it.
// Either way the figure must say which writes it used, and warn when O_DIRECT was refused.
#[test]
fn copy_to_a_cifs_mount_with_cache_loose_says_which_writes_it_used() {
    if !vm_enabled() {
        return;
    }
    let guest = Guest::with_nas("smb").nas_mount_opts("cache=loose");
    let source = guest.path("a.src");
    make_file(&source, "5M");
    guest.run(r#"step up "$X" -q copy "$D/a.src" "$LAB_NAS_MNT/a.img" --verify --json"#);
    let report = json_report(&guest.succeeded("up"));
    let conditions = &report["measurement"]["conditions"];
    assert_eq!(
        conditions["mount"]["options"]["cache"], "loose",
        "{report:#}"
    );
    let direct = conditions["destination_direct"].as_bool().unwrap();
    assert_eq!(
        !direct,
        has_warning(&report, "direct_unsupported"),
        "{report:#}"
    );
    assert_eq!(report["verify"]["matched"], true, "{report:#}");
}

#[test]
fn copy_to_a_full_or_read_only_share_fails_in_one_line_and_leaves_nothing_under_its_name() {
    if !vm_enabled() {
        return;
    }
    // A 48 MiB export: ext4's own blocks leave room for less than the 64 MiB file.
    let guest = Guest::with_nas("nfs").nas_size("48M");
    make_file(&guest.path("big.src"), "64M");
    make_file(&guest.path("small.src"), "1M");
    guest.run(
        r#"
step full "$X" -q copy "$D/big.src" "$LAB_NAS_MNT/big.img"
ls -A "$LAB_NAS_MNT" > "$D/after_full.ls"
mount -o remount,ro "$LAB_NAS_MNT"
step read_only "$X" -q copy "$D/small.src" "$LAB_NAS_MNT/small.img"
ls -A "$LAB_NAS_MNT" > "$D/after_ro.ls"
"#,
    );
    guest.failed_saying("full", &["space", "/mnt/nas"]);
    guest.failed_saying("read_only", &["/mnt/nas"]);
    for listing in ["after_full.ls", "after_ro.ls"] {
        let left = std::fs::read_to_string(guest.path(listing)).unwrap();
        assert!(
            !left.contains("big.img") && !left.contains("small.img"),
            "{listing}: {left}"
        );
    }
}

/// `nas_serve [WRAPPER...]`: starts `serve` in the NAS's namespace with its root on the export
/// (as `run --net` wants it), run under WRAPPER (e.g. `in_cgroup nas`); `in_cgroup NAME CMD...`
/// runs CMD in cgroup NAME.
const NAS_SERVE: &str = r#"
in_cgroup() { local group=$1; shift; bash -c 'echo $$ > "/sys/fs/cgroup/$0/cgroup.procs"; exec "$@"' "$group" "$@"; }
nas_serve() {
  "$@" ip netns exec "$LAB_NAS_NETNS" "$X" serve --listen "$LAB_NAS_ADDR" --root "$LAB_NAS_EXPORT" \
    --token vm-token >"$D/nas-serve.log" 2>&1 &
  for _ in $(seq 120); do grep -q '^listening' "$D/nas-serve.log" && return 0; sleep 0.5; done
  echo "serve on the NAS did not start" >&2; cat "$D/nas-serve.log" >&2; exit 1
}
"#;

/// The stages a `run` report's one path names as its bottleneck.
fn bottleneck(report: &Value) -> Vec<String> {
    report["paths"][0]["verdict"]["bottleneck"]
        .as_array()
        .unwrap_or_else(|| panic!("no verdict: {report:#}"))
        .iter()
        .map(|stage| stage.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn run_to_an_nfs_share_behind_a_slow_link_names_the_network_and_without_net_the_share() {
    if !vm_enabled() {
        return;
    }
    let guest = Guest::with_nas("nfs");
    guest.run(&format!(
        r#"{NAS_SERVE}
nas_serve
# 40 Mbit/s from the client: the share's writes and the serve's upload alike; the NAS's disk
# (a loop device in memory) writes faster.
tc qdisc add dev "$LAB_NAS_VETH" root tbf rate 40mbit burst 32kb latency 50ms
step net "$X" -q run --to "$LAB_NAS_MNT" --net "$LAB_NAS_ADDR" --token vm-token --size 16M --files 0 --dir "$D" -t 2 -J
step alone "$X" -q run --to "$LAB_NAS_MNT" --size 16M --files 0 --dir "$D" -J
ls -A "$LAB_NAS_MNT" > "$D/left.ls"
"#
    ));
    let report = json_report(&guest.succeeded("net"));
    assert_eq!(bottleneck(&report), vec!["network"], "{report:#}");
    let path = &report["paths"][0];
    let sentence = path["sentence"].as_str().unwrap();
    assert!(
        sentence.starts_with("nfs4 share: ") && sentence.contains("% of the network"),
        "{sentence}"
    );
    for stage in ["destination_write", "destination_read", "nas_disk"] {
        assert!(report[stage].is_object(), "{stage}: {report:#}");
    }
    let mount = &report["destination_write"]["measurements"][0]["conditions"]["mount"];
    assert_eq!(mount["fs_type"], "nfs4", "{mount:#}");
    assert_eq!(path["copy"]["measurements"][0]["bytes"], 16 << 20);
    // Without a serve on the NAS, a veth's speed is unknown: the network is not measured, and
    // the share's write is named, with what it cannot tell apart.
    let alone = json_report(&guest.succeeded("alone"));
    assert_eq!(bottleneck(&alone), vec!["share"], "{alone:#}");
    assert_eq!(
        alone["paths"][0]["verdict"]["missing"],
        serde_json::json!(["network"])
    );
    assert!(
        alone["paths"][0]["latency_failed"]
            .as_str()
            .unwrap()
            .contains("give --net HOST"),
        "{alone:#}"
    );
    let left = std::fs::read_to_string(guest.path("left.ls")).unwrap();
    assert_eq!(left.trim(), "lost+found", "the run left files on the share");
}

#[test]
fn run_to_an_smb_share_on_a_throttled_nas_disk_names_the_nass_disk() {
    if !vm_enabled() {
        return;
    }
    let guest = Guest::with_nas("smb");
    guest.run(&format!(
        r#"{NAS_SERVE}
# The export's disk held to 2 MB/s of writes for smbd and the serve beside it (cgroup v2 io.max
# on the loop device): the NAS's disk, not the link or SMB, is then the slowest part.
[ -e /sys/fs/cgroup/cgroup.controllers ] || mount -t cgroup2 none /sys/fs/cgroup
echo +io > /sys/fs/cgroup/cgroup.subtree_control
mkdir -p /sys/fs/cgroup/nas
dev=$(lsblk -dno MAJ:MIN "$(findmnt -no SOURCE "$LAB_NAS_EXPORT")" | tr -d ' ')
echo "$dev wbps=2097152" > /sys/fs/cgroup/nas/io.max
for p in $(pgrep smbd); do echo "$p" > /sys/fs/cgroup/nas/cgroup.procs; done
nas_serve in_cgroup nas
step net "$X" -q run --to "$LAB_NAS_MNT" --net "$LAB_NAS_ADDR" --token vm-token --size 16M --files 0 --dir "$D" -t 2 -J
"#
    ));
    let report = json_report(&guest.succeeded("net"));
    assert_eq!(bottleneck(&report), vec!["nas_disk"], "{report:#}");
    let nas = report["nas_disk"]["median_bytes_per_sec"].as_f64().unwrap();
    assert!(
        nas < 2.2e6,
        "the NAS's disk wrote at {nas} B/s, past its 2 MB/s throttle"
    );
    let network = report["paths"][0]["network"]["median_bytes_per_sec"]
        .as_f64()
        .unwrap();
    assert!(network > 10.0 * nas, "{report:#}");
    let sentence = report["paths"][0]["sentence"].as_str().unwrap();
    assert!(
        sentence.starts_with("cifs share: ") && sentence.contains("limited by the NAS's disk"),
        "{sentence}"
    );
}
