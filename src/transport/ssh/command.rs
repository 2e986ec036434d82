//! The remote commands of the SSH path: what the client asks a stock OpenSSH server to run
//! (plain POSIX tools and GNU coreutils, nothing of ours), and what `serve`'s embedded SSH
//! server understands natively instead of running a shell.
//!
//! One type renders a command as a shell line and parses such a line back, so the client and
//! the embedded server cannot drift apart. Paths are single-quoted for the shell.

use std::fmt;

/// The exit status of a `fresh` [`RemoteCommand::WriteThenFinish`] whose path exists (EEXIST's
/// number, so that it reads as what it is).
pub const EXISTS: u32 = 17;

/// What [`crate::transport::ssh::exec::Output::check`] gives for [`EXISTS`] from a `fresh`
/// [`RemoteCommand::WriteThenFinish`]: the target was there, nothing was written.
#[derive(Debug)]
pub struct Exists;

impl fmt::Display for Exists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the file is already there")
    }
}

impl std::error::Error for Exists {}

/// Bytes per `dd` block: big blocks, few system calls on the far side.
pub const DD_BLOCK: &str = "1M";

/// One command run on the far side of an exec channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteCommand {
    /// `scp -t -- PATH`: the SCP sink; it writes what the client sends (OpenSSH's `scp -O` sends
    /// this too, with extra flags such as `-v`, `-p` or `-d`).
    ScpSink { path: String },
    /// [`RemoteCommand::WriteRange`] from 0, then (`&&`) [`RemoteCommand::Finish`]: one
    /// stream's upload and its landing in one exec, so the landing costs no second round of shell
    /// start-up. `dd`, not `scp -t`: scp's sink reads and writes 16 KiB at a time, which cost
    /// the far side ~20 % more CPU per GB than dd's large writes (compare-ssh.sh). `fresh`:
    /// first `test ! -e PATH || exit 17` ([`EXISTS`]), so the check that nothing is there
    /// costs no exec of its own (each exec runs the login shell's start-up files).
    WriteThenFinish {
        temp: String,
        size: u64,
        path: String,
        fresh: bool,
    },
    /// `scp -f -- PATH`: the SCP source; it sends the file.
    ScpSource { path: String },
    /// `scp -r -p -d -t -- DIR`: the SCP sink of a tree (`D`/`E` records enter and leave
    /// directories), modes and times kept, landing inside the directory `DIR`.
    ScpTreeSink { dir: String },
    /// `tar -x` of the archive on standard input, member names as the login's shell reads
    /// paths (absolute ones kept: `-P`), modes exact, owned by the login: the sink of a tree's
    /// upload when the far side has GNU tar (no acknowledgement per file, large reads).
    TarTreeSink,
    /// `sh -s`: a shell reading its script from standard input (a tree's links, renames and
    /// directory metadata, which SCP cannot carry).
    Shell,
    /// `sh -c SCRIPT NAME ARGS…`: a script given on the command line, its standard input left
    /// to it (`mesh --ssh-launch`'s far wrapper of serve reads its token there). Shown in
    /// messages as `sh -c … NAME ARGS…`.
    Script {
        name: String,
        script: String,
        args: Vec<String>,
    },
    /// Succeeds only when `path` is a directory (following a link).
    IsDir { path: String },
    /// Prints `dir` when `destination` is a directory, `exists` when what a tree named `name`
    /// would land as (inside it, or as it) is already there, and `gnutar` when `tar` is GNU
    /// tar.
    TreeProbe { destination: String, name: String },
    /// `tar -c` of everything in `dir` (links as links, hard links as files), POSIX format
    /// so that times keep their fractions and names have no length limit: a tree's download.
    TarSource { dir: String },
    /// Prints `FILES BYTES`: the regular files below `dir` and their sizes' sum.
    TreeTotals { dir: String },
    /// Prints every directory below `dir` (itself too), deepest first, NUL-ended:
    /// `MODE MTIME ATIME PATH` (octal mode, seconds with fractions, path relative to `dir`).
    DirTimes { dir: String },
    /// Prints where `sha256sum`, else `b2sum`, is: the tool `--verify` can run.
    HashTool,
    /// `TOOL -- PATH`, or with `range` (offset, length) `dd … | TOOL`: the digest of the
    /// landed file (or of that part of it) as the far side reads it.
    Digest {
        tool: String,
        path: String,
        range: Option<(u64, u64)>,
    },
    /// `head -c LEN -- PATH | TOOL`: the digest of the first `len` bytes of `path` (`--resume`).
    PrefixDigest {
        tool: String,
        path: String,
        len: u64,
    },
    /// Cuts `temp` to `size` and flushes it to the disk (fsync): [`RemoteCommand::Finish`]
    /// without its rename, for a file checked before it takes its name.
    Flush { temp: String, size: u64 },
    /// Renames `temp` to `path`.
    Rename { temp: String, path: String },
    /// Writes standard input at `offset` of `path` (created if missing, never truncated).
    WriteRange { path: String, offset: u64 },
    /// Sends `len` bytes of `path` from `offset`.
    ReadRange { path: String, offset: u64, len: u64 },
    /// Prints the size of `path` in bytes and its type (following symlinks): `N regular file`
    /// (`serve` prints only `N`, having checked the type itself).
    Size { path: String },
    /// Prints the home directory of `user` as the remote shell expands `~user`.
    HomeOf { user: String },
    /// Succeeds only when nothing exists at `path`.
    Absent { path: String },
    /// Cuts `temp` to `size`, flushes it to the disk (fsync) and renames it to `path`.
    Finish {
        temp: String,
        size: u64,
        path: String,
    },
    /// Removes `path` if it exists.
    Discard { path: String },
    /// Reads standard input and throws it away: the far end of a memory-to-memory upload.
    Sink,
    /// Sends zeros until the channel closes: the far end of a memory-to-memory download.
    Source,
    /// `cat`: sends standard input back as it comes, the far end of a latency test.
    Echo,
    /// Writes `count` blocks of 1 MiB of zeros to `path` with O_DIRECT and an fsync, prints dd's
    /// summary, and removes the file: the far disk's write baseline.
    WriteBaseline { path: String, count: u64 },
}

impl RemoteCommand {
    /// The shell line sent in the exec request.
    pub fn render(&self) -> String {
        match self {
            RemoteCommand::ScpSink { path } => format!("scp -t -- {}", quote(path)),
            RemoteCommand::WriteThenFinish {
                temp,
                size,
                path,
                fresh,
            } => format!(
                "{}{} && {}",
                if *fresh {
                    format!("test ! -e {} || exit {EXISTS}; ", quote(path))
                } else {
                    String::new()
                },
                RemoteCommand::WriteRange {
                    path: temp.clone(),
                    offset: 0
                }
                .render(),
                RemoteCommand::Finish {
                    temp: temp.clone(),
                    size: *size,
                    path: path.clone()
                }
                .render()
            ),
            RemoteCommand::ScpSource { path } => format!("scp -f -- {}", quote(path)),
            RemoteCommand::ScpTreeSink { dir } => format!("scp -r -p -d -t -- {}", quote(dir)),
            RemoteCommand::TarTreeSink => {
                "tar -x -f - -P -p --no-same-owner --warning=no-timestamp".to_string()
            }
            RemoteCommand::Shell => "sh -s".to_string(),
            RemoteCommand::Script { name, script, args } => {
                let mut line = format!("sh -c {} {}", quote(script), quote(name));
                for arg in args {
                    line.push(' ');
                    line.push_str(&quote(arg));
                }
                line
            }
            RemoteCommand::IsDir { path } => format!("test -d {}", quote(path)),
            RemoteCommand::TreeProbe { destination, name } => format!(
                "if test -d {d}; then echo dir; test -e {inside} && echo exists; else test -e {d} && echo exists; fi; tar --version 2>/dev/null | grep -q '^tar (GNU tar)' && echo gnutar; true",
                d = quote(destination),
                inside = quote(&format!("{destination}/{name}"))
            ),
            RemoteCommand::TarSource { dir } => format!(
                "tar -c -f - --format=posix --hard-dereference -C {} .",
                quote(dir)
            ),
            RemoteCommand::TreeTotals { dir } => format!(
                "find {} -type f -printf '%s\\n' | awk '{{ n++; s += $1 }} END {{ printf \"%.0f %.0f\\n\", n, s }}'",
                quote(dir)
            ),
            RemoteCommand::DirTimes { dir } => format!(
                "find {} -depth -type d -printf '%m %T@ %A@ %P\\0'",
                quote(dir)
            ),
            RemoteCommand::HashTool => "command -v sha256sum || command -v b2sum".to_string(),
            RemoteCommand::Digest { tool, path, range } => match range {
                None => format!("{tool} -- {}", quote(path)),
                Some((offset, len)) => format!(
                    "dd if={} bs={DD_BLOCK} skip={offset} count={len} iflag=skip_bytes,count_bytes status=none | {tool}",
                    quote(path)
                ),
            },
            RemoteCommand::PrefixDigest { tool, path, len } => {
                format!("head -c {len} -- {} | {tool}", quote(path))
            }
            RemoteCommand::Flush { temp, size } => {
                format!("truncate -s {size} -- {t} && sync -- {t}", t = quote(temp))
            }
            RemoteCommand::Rename { temp, path } => {
                format!("mv -f -- {} {}", quote(temp), quote(path))
            }
            RemoteCommand::WriteRange { path, offset } => format!(
                // No iflag=fullblock: gathering 1 MiB from the pipe measured 15 % slower than
                // writing each read as it comes, which is as correct for a stream without count=.
                "dd of={} bs={DD_BLOCK} seek={offset} oflag=seek_bytes conv=notrunc status=none",
                quote(path)
            ),
            RemoteCommand::ReadRange { path, offset, len } => format!(
                "dd if={} bs={DD_BLOCK} skip={offset} count={len} iflag=skip_bytes,count_bytes status=none",
                quote(path)
            ),
            RemoteCommand::Size { path } => format!("stat -L -c '%s %F' -- {}", quote(path)),
            // The tilde-prefix stays unquoted for the shell to expand; `user` is a plain name.
            RemoteCommand::HomeOf { user } => format!("printf '%s\\n' ~{user}"),
            RemoteCommand::Absent { path } => format!("test ! -e {}", quote(path)),
            RemoteCommand::Finish { temp, size, path } => format!(
                "truncate -s {size} -- {t} && sync -- {t} && mv -f -- {t} {}",
                quote(path),
                t = quote(temp)
            ),
            RemoteCommand::Discard { path } => format!("rm -f -- {}", quote(path)),
            RemoteCommand::Sink => "cat > /dev/null".to_string(),
            RemoteCommand::Source => "cat /dev/zero".to_string(),
            RemoteCommand::Echo => "cat".to_string(),
            RemoteCommand::WriteBaseline { path, count } => format!(
                "dd if=/dev/zero of={p} bs={DD_BLOCK} count={count} oflag=direct conv=fsync 2>&1; s=$?; rm -f -- {p}; exit $s",
                p = quote(path)
            ),
        }
    }

    /// The tool the remote must have for this command, for the message when it has not.
    pub fn program(&self) -> &'static str {
        match self {
            RemoteCommand::ScpSink { .. }
            | RemoteCommand::ScpSource { .. }
            | RemoteCommand::ScpTreeSink { .. } => "scp",
            RemoteCommand::Shell | RemoteCommand::Script { .. } => "sh",
            RemoteCommand::IsDir { .. } | RemoteCommand::TreeProbe { .. } => "test",
            RemoteCommand::TarSource { .. } | RemoteCommand::TarTreeSink => "tar (GNU tar)",
            RemoteCommand::TreeTotals { .. } | RemoteCommand::DirTimes { .. } => {
                "find (GNU findutils) and awk"
            }
            RemoteCommand::HashTool
            | RemoteCommand::Digest { .. }
            | RemoteCommand::PrefixDigest { .. } => "sha256sum or b2sum (GNU coreutils)",
            RemoteCommand::Flush { .. } => "truncate and sync (GNU coreutils)",
            RemoteCommand::Rename { .. } => "mv",
            RemoteCommand::WriteRange { .. }
            | RemoteCommand::ReadRange { .. }
            | RemoteCommand::WriteBaseline { .. } => "dd",
            RemoteCommand::Size { .. } => "stat",
            RemoteCommand::HomeOf { .. } => "printf",
            RemoteCommand::Absent { .. } => "test",
            RemoteCommand::Finish { .. } => "truncate, sync and mv (GNU coreutils)",
            RemoteCommand::WriteThenFinish { .. } => "dd, truncate, sync and mv (GNU coreutils)",
            RemoteCommand::Discard { .. } => "rm",
            RemoteCommand::Sink | RemoteCommand::Source | RemoteCommand::Echo => "cat",
        }
    }

    /// Reads a shell line back into a command; None for anything else (the embedded server
    /// runs no shell, so it refuses what it does not know).
    pub fn parse(line: &str) -> Option<RemoteCommand> {
        let words = shlex::split(line)?;
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        parse_words(&words)
    }
}

/// [`RemoteCommand::parse`] of a line already split into shell words.
fn parse_words(words: &[&str]) -> Option<RemoteCommand> {
    match words {
        ["test", "!", "-e", guarded, "||", "exit", code, rest @ ..]
            if *code == format!("{EXISTS};") =>
        {
            match parse_words(rest)? {
                RemoteCommand::WriteThenFinish {
                    temp,
                    size,
                    path,
                    fresh: false,
                } if path == *guarded => Some(RemoteCommand::WriteThenFinish {
                    temp,
                    size,
                    path,
                    fresh: true,
                }),
                _ => None,
            }
        }
        // dd's words are all `key=value`: the first lone `&&` ends them.
        ["dd", rest @ ..] if rest.contains(&"&&") => {
            let and = rest.iter().position(|word| *word == "&&")?;
            match (parse_dd(&rest[..and])?, parse_finish(&rest[and + 1..])?) {
                (
                    RemoteCommand::WriteRange { path: w, offset: 0 },
                    RemoteCommand::Finish { temp, size, path },
                ) if w == temp => Some(RemoteCommand::WriteThenFinish {
                    temp,
                    size,
                    path,
                    fresh: false,
                }),
                _ => None,
            }
        }
        ["scp", rest @ ..] => parse_scp(rest),
        ["dd", rest @ ..] => parse_dd(rest),
        ["stat", "-L", "-c", "%s %F" | "%s", "--", path] => Some(RemoteCommand::Size {
            path: path.to_string(),
        }),
        ["printf", "%s\\n", home] => Some(RemoteCommand::HomeOf {
            user: login_name(home.strip_prefix('~')?)?.to_string(),
        }),
        ["test", "!", "-e", path] => Some(RemoteCommand::Absent {
            path: path.to_string(),
        }),
        ["truncate", ..] => parse_finish(words),
        ["rm", "-f", "--", path] => Some(RemoteCommand::Discard {
            path: path.to_string(),
        }),
        ["cat", ">", "/dev/null"] => Some(RemoteCommand::Sink),
        ["cat", "/dev/zero"] => Some(RemoteCommand::Source),
        ["cat"] => Some(RemoteCommand::Echo),
        _ => None,
    }
}

impl fmt::Display for RemoteCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The script itself would fill the message.
            RemoteCommand::Script { name, args, .. } => {
                write!(f, "sh -c … {name}")?;
                for arg in args {
                    write!(f, " {}", quote(arg))?;
                }
                Ok(())
            }
            command => f.write_str(&command.render()),
        }
    }
}

/// `truncate -s SIZE -- T && sync -- T && mv -f -- T PATH`.
fn parse_finish(words: &[&str]) -> Option<RemoteCommand> {
    match words {
        [
            "truncate",
            "-s",
            size,
            "--",
            t1,
            "&&",
            "sync",
            "--",
            t2,
            "&&",
            "mv",
            "-f",
            "--",
            t3,
            path,
        ] if t1 == t2 && t2 == t3 => Some(RemoteCommand::Finish {
            temp: t1.to_string(),
            size: size.parse().ok()?,
            path: path.to_string(),
        }),
        _ => None,
    }
}

/// `scp [-v] [-p] [-d] [-r] -t|-f [--] PATH`, as OpenSSH's scp and ours send it.
fn parse_scp(words: &[&str]) -> Option<RemoteCommand> {
    let (mut sink, mut source, mut path) = (false, false, None);
    let mut options_done = false;
    for word in words {
        match *word {
            "--" if !options_done => options_done = true,
            "-t" if !options_done => sink = true,
            "-f" if !options_done => source = true,
            "-v" | "-p" | "-d" if !options_done => {}
            _ if path.is_none() && (options_done || !word.starts_with('-')) => {
                path = Some(home_relative(word).unwrap_or(word).to_string())
            }
            _ => return None,
        }
    }
    let path = path?;
    match (sink, source) {
        (true, false) => Some(RemoteCommand::ScpSink { path }),
        (false, true) => Some(RemoteCommand::ScpSource { path }),
        _ => None,
    }
}

/// Only the two `dd` lines `render` makes.
fn parse_dd(words: &[&str]) -> Option<RemoteCommand> {
    let mut fields = std::collections::BTreeMap::new();
    for word in words {
        let (key, value) = word.split_once('=')?;
        if fields.insert(key, value).is_some() {
            return None;
        }
    }
    let take = |key: &str| fields.get(key).copied();
    let number = |key: &str| take(key)?.parse::<u64>().ok();
    if take("bs")? != DD_BLOCK || take("status")? != "none" {
        return None;
    }
    match (take("of"), take("if")) {
        (Some(path), None)
            if take("oflag")? == "seek_bytes"
                && take("conv")? == "notrunc"
                && fields.len() == 6 =>
        {
            Some(RemoteCommand::WriteRange {
                path: path.to_string(),
                offset: number("seek")?,
            })
        }
        (None, Some(path)) if take("iflag")? == "skip_bytes,count_bytes" && fields.len() == 6 => {
            Some(RemoteCommand::ReadRange {
                path: path.to_string(),
                offset: number("skip")?,
                len: number("count")?,
            })
        }
        _ => None,
    }
}

/// A user name the shell can take in `~user`: letters, digits, `.`, `_`, `-`, not first `-`.
pub fn login_name(user: &str) -> Option<&str> {
    let plain = user
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    (plain && !user.is_empty() && !user.starts_with('-')).then_some(user)
}

/// `~` and `~/…` relative to the login's home, where every remote command starts: `~` is
/// `""`, `~/x` is `x`; None for any other path (`~user/x` included).
pub fn home_relative(path: &str) -> Option<&str> {
    match path.strip_prefix('~')? {
        "" => Some(""),
        rest => rest
            .strip_prefix('/')
            .map(|rest| rest.trim_start_matches('/')),
    }
}

/// Single-quotes a word for a POSIX shell.
pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// [`quote`] for a name that may not be UTF-8 (a file name is bytes).
pub fn quote_bytes(word: &[u8]) -> Vec<u8> {
    let mut quoted = Vec::with_capacity(word.len() + 2);
    quoted.push(b'\'');
    for &byte in word {
        match byte {
            b'\'' => quoted.extend_from_slice(b"'\\''"),
            byte => quoted.push(byte),
        }
    }
    quoted.push(b'\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_command(path: &str) -> Vec<RemoteCommand> {
        let path = path.to_string();
        vec![
            RemoteCommand::ScpSink { path: path.clone() },
            RemoteCommand::ScpSource { path: path.clone() },
            RemoteCommand::WriteRange {
                path: path.clone(),
                offset: 1 << 30,
            },
            RemoteCommand::ReadRange {
                path: path.clone(),
                offset: 4096,
                len: 12345,
            },
            RemoteCommand::Size { path: path.clone() },
            RemoteCommand::Absent { path: path.clone() },
            RemoteCommand::Finish {
                temp: format!("{path}.partial"),
                size: 77,
                path: path.clone(),
            },
            RemoteCommand::WriteThenFinish {
                temp: format!("{path}.partial"),
                size: 5,
                path: path.clone(),
                fresh: false,
            },
            RemoteCommand::WriteThenFinish {
                temp: format!("{path}.partial"),
                size: 5,
                path: path.clone(),
                fresh: true,
            },
            RemoteCommand::Discard { path },
            RemoteCommand::HomeOf {
                user: "ann.b_c-1".into(),
            },
            RemoteCommand::Sink,
            RemoteCommand::Source,
            RemoteCommand::Echo,
        ]
    }

    #[test]
    fn every_command_reads_back_as_itself() {
        for path in ["big.img", "in dir/it's a file", "-dash", "ünï/$HOME`x`"] {
            for command in every_command(path) {
                assert_eq!(
                    RemoteCommand::parse(&command.render()),
                    Some(command.clone()),
                    "{command}"
                );
            }
        }
    }

    #[test]
    fn quoted_paths_reach_the_shell_as_one_word() {
        let line = RemoteCommand::Discard {
            path: "a b'c;rm -rf /".into(),
        }
        .render();
        assert_eq!(line, r"rm -f -- 'a b'\''c;rm -rf /'");
        assert_eq!(
            shlex::split(&line).unwrap(),
            ["rm", "-f", "--", "a b'c;rm -rf /"]
        );
    }

    #[test]
    fn openssh_scp_command_lines_are_understood() {
        assert_eq!(
            RemoteCommand::parse("scp -t in/x"),
            Some(RemoteCommand::ScpSink {
                path: "in/x".into()
            })
        );
        assert_eq!(
            RemoteCommand::parse("scp -v -p -f -- -odd"),
            Some(RemoteCommand::ScpSource {
                path: "-odd".into()
            })
        );
        assert_eq!(RemoteCommand::parse("scp -r -t dir"), None);
        assert_eq!(RemoteCommand::parse("scp -t -f x"), None);
        assert_eq!(RemoteCommand::parse("scp -t"), None);
    }

    #[test]
    fn home_paths_read_relative_to_the_login_home() {
        assert_eq!(home_relative("~"), Some(""));
        assert_eq!(home_relative("~/in/x"), Some("in/x"));
        assert_eq!(home_relative("~//x"), Some("x"));
        assert_eq!(home_relative("~ann/x"), None);
        assert_eq!(home_relative("a/~/x"), None);
        assert_eq!(
            RemoteCommand::parse("scp -t ~/in/x"),
            Some(RemoteCommand::ScpSink {
                path: "in/x".into()
            })
        );
        assert_eq!(login_name("ann"), Some("ann"));
        for bad in ["", "-x", "a b", "a;b", "$(x)", "a/b"] {
            assert_eq!(login_name(bad), None, "{bad}");
        }
        assert_eq!(RemoteCommand::parse("printf '%s\\n' ~a;b"), None);
    }

    #[test]
    fn a_script_reaches_sh_as_one_word_with_its_arguments_and_is_shown_short() {
        let command = RemoteCommand::Script {
            name: "wrapper".into(),
            script: "echo \"$1\"; read -r x".into(),
            args: vec!["it's".into(), "".into()],
        };
        assert_eq!(
            shlex::split(&command.render()).unwrap(),
            ["sh", "-c", "echo \"$1\"; read -r x", "wrapper", "it's", ""]
        );
        assert_eq!(command.to_string(), r"sh -c … wrapper 'it'\''s' ''");
        assert_eq!(RemoteCommand::parse(&command.render()), None);
    }

    #[test]
    fn anything_else_is_refused() {
        for line in [
            "",
            "sh -c 'cat /etc/shadow'",
            "cat /etc/passwd",
            "dd if=/dev/sda of=x bs=1M",
            "dd of=x bs=1M seek=0 oflag=seek_bytes conv=notrunc iflag=fullblock status=none count=1",
            "rm -rf /",
            "test ! -e a && rm b",
            "truncate -s 1 -- a && sync -- b && mv -f -- a c",
            "cat > /dev/null; reboot",
            "'unterminated",
        ] {
            assert_eq!(RemoteCommand::parse(line), None, "{line}");
        }
    }
}
