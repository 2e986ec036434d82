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
