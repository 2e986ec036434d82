//! The lab VM (`scripts/lab-vm.sh`) as the tests drive it: a bash script runs in a fresh guest
//! with the test binary as `$X` and a scratch directory of this machine as `$D` (the guest sees
//! it at the same path, so files are made and checked here). With a NAS (`--nas smb|nfs`), the
//! guest has a real share mounted at `$LAB_NAS_MNT` before the script starts.

// Each area takes the part it needs; a build without the rdma feature leaves some unused.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{
    Run, assert_failed_cleanly, assert_says_all, assert_success, bin, rates_lock, temp_dir,
};

/// Whether the VM tests behind `variable` (=1) are on; if not, says so in one line.
pub fn enabled(variable: &str, what: &str) -> bool {
    let on = std::env::var_os(variable).is_some_and(|v| v == "1");
    if !on {
        eprintln!("skipped: set {variable}=1 (after scripts/lab-vm.sh setup) to run {what}");
    }
    on
}

/// Bash run in the guest before each test's steps: `step NAME CMD...` keeps CMD's stdout,
/// stderr and exit code in the scratch dir; `serve PORT [ARGS]` starts a server there.
const PRELUDE: &str = r#"
set -u
step() { local name=$1; shift; "$@" >"$D/$name.out" 2>"$D/$name.err"; echo $? >"$D/$name.code"; }
serve() {
  local port=$1; shift
  mkdir -p "$D/root$port"
  "$X" serve --listen 127.0.0.1:$port --root "$D/root$port" "$@" >"$D/serve$port.log" 2>&1 &
  SERVED=$!
  for _ in $(seq 100); do grep -q '^listening' "$D/serve$port.log" && return 0; sleep 0.1; done
  echo "serve on $port did not start" >&2; cat "$D/serve$port.log" >&2; exit 1
}
"#;

/// One VM run: its scratch directory, and the `lab-vm.sh run` options it boots with.
pub struct Guest {
    pub dir: tempfile::TempDir,
    options: Vec<String>,
}

impl Guest {
    pub fn new() -> Guest {
        Guest {
            dir: temp_dir(),
            options: Vec::new(),
        }
    }

    /// A guest with a real share of `kind` (`smb` or `nfs`) mounted at `$LAB_NAS_MNT`.
    pub fn with_nas(kind: &str) -> Guest {
        let mut guest = Guest::new();
        guest.options.extend(["--nas".into(), kind.into()]);
        guest
    }

    /// Options appended to the share's mount options (a later option wins: `cache=strict`).
    pub fn nas_mount_opts(mut self, options: &str) -> Guest {
        self.options
            .extend(["--nas-mount-opts".into(), options.into()]);
        self
    }

    /// The size of the export's file system (e.g. "48M").
    pub fn nas_size(mut self, size: &str) -> Guest {
        self.options.extend(["--nas-size".into(), size.into()]);
        self
    }

    /// The export's options (nfs, replacing the default) or share parameters (smb).
    pub fn nas_export_opts(mut self, options: &str) -> Guest {
        self.options
            .extend(["--nas-export-opts".into(), options.into()]);
        self
    }

    /// Each write of the export's disk takes `ms` ms more (dm-delay): a medium that a stable
    /// write must wait for.
    pub fn nas_disk_delay(mut self, ms: u32) -> Guest {
        self.options
            .extend(["--nas-disk-delay".into(), ms.to_string()]);
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn root(&self, port: u16) -> PathBuf {
        self.path(&format!("root{port}"))
    }

    /// Runs `script` (after the prelude) in a fresh VM; fails the test if the VM itself fails.
    pub fn run(&self, script: &str) {
        // One VM at a time (each has two vCPUs of its own, emulated), and nothing else measuring.
        let _one = rates_lock();
        let file = self.path("steps.sh");
        std::fs::write(&file, format!("{PRELUDE}\n{script}\n")).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(repo.join("scripts/lab-vm.sh"))
            .args(["run", "--share"])
            .arg(self.dir.path())
            .arg("--env")
            .arg(format!("X={}", bin().display()))
            .arg("--env")
            .arg(format!("D={}", self.dir.path().display()))
            .args(&self.options)
            .args(["--", "bash"])
            .arg(&file)
            .env("RDMA_VM_TIMEOUT", "300")
            .output()
            .expect("running scripts/lab-vm.sh");
        assert!(
            out.status.success(),
            "the VM run failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// What step `name` printed and how it exited.
    pub fn step(&self, name: &str) -> Run {
        let read = |ext: &str| std::fs::read_to_string(self.path(&format!("{name}.{ext}")));
        let code = read("code")
            .unwrap_or_else(|err| panic!("step {name} did not run: {err}"))
            .trim()
            .parse()
            .unwrap();
        Run {
            code,
            stdout: read("out").unwrap_or_default(),
            stderr: read("err").unwrap_or_default(),
        }
    }

    pub fn succeeded(&self, name: &str) -> Run {
        let out = self.step(name);
        assert_success(out.code, &out.stdout, &out.stderr);
        out
    }

    /// The step failed with one line on stderr that contains every one of `words`.
    pub fn failed_saying(&self, name: &str, words: &[&str]) -> Run {
        let out = self.step(name);
        assert_ne!(out.code, 0, "step {name} succeeded: {}", out.stdout);
        // A flag the path cannot take is a usage error (exit 2); anything else a failure.
        if out.code == 2 {
            assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
        } else {
            assert_failed_cleanly(&out);
        }
        assert_says_all(&format!("step {name}"), &out.stderr, words);
        out
    }
}
