//! The hosts of a mesh as the user writes them: pdsh-style ranges (`node[01-08]`,
//! `10.0.0.[1-4]`, `node[1,3,5-7]`) and a hosts file of `HOST [TOKEN]` lines.

use std::fmt;

/// More hosts than this from ranges is refused without `--yes`: a typo such as `[1-10000]`
/// would otherwise start hours of tests.
pub const MANY_HOSTS: usize = 1000;

/// Why a host list cannot be used; each says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsError(pub String);

impl fmt::Display for HostsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostsError {}

fn error(message: impl Into<String>) -> HostsError {
    HostsError(message.into())
}

/// One host of the mesh and the token its serve wants (None: the `--token` for all, if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub host: String,
    pub token: Option<String>,
}

/// Every host a pattern names, in order: each `[…]` holds numbers and `A-B` ranges separated by
/// commas (`A` with leading zeros keeps that width). Brackets holding a `:` are an IPv6 address
/// (`[::1]:5301`), not a range. Errors: a malformed range, or more than `limit` hosts.
pub fn expand(pattern: &str, limit: usize) -> Result<Vec<String>, HostsError> {
    let Some(open) = range_start(pattern) else {
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|at| open + at)
        .ok_or_else(|| {
            error(format!(
                "'{pattern}': a '[' without its ']'; write a range as node[01-08]"
            ))
        })?;
    let numbers = range_numbers(pattern, &pattern[open + 1..close])?;
    let rests = expand(&pattern[close + 1..], limit)?;
    let count = numbers.len().saturating_mul(rests.len());
    if count > limit {
        return Err(error(format!(
            "'{pattern}' names {count} hosts, more than {limit}; give --yes if you mean it"
        )));
    }
    let prefix = &pattern[..open];
    let mut hosts = Vec::with_capacity(count);
    for number in &numbers {
        for rest in &rests {
            hosts.push(format!("{prefix}{number}{rest}"));
        }
    }
    Ok(hosts)
}

/// Where the first range's `[` is: a bracket holding `:` (IPv6) is skipped.
fn range_start(pattern: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = pattern[from..].find('[').map(|at| from + at) {
        let inner = pattern[at + 1..].split(']').next().unwrap_or("");
        if !inner.contains(':') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The numbers of one range, as text with their padding.
fn range_numbers(pattern: &str, inner: &str) -> Result<Vec<String>, HostsError> {
    let malformed = |why: &str| {
        error(format!(
            "'{pattern}': [{inner}] {why}; write a range as node[01-08] or node[1,3,5-7]"
        ))
    };
    let mut numbers = Vec::new();
    for item in inner.split(',') {
        let (low, high) = item.split_once('-').unwrap_or((item, item));
        let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        if !digits(low) || !digits(high) {
            return Err(malformed("is not numbers and A-B ranges"));
        }
        let (Ok(start), Ok(end)) = (low.parse::<u64>(), high.parse::<u64>()) else {
            return Err(malformed("has a number too large"));
        };
        if start > end {
            return Err(malformed("runs backwards"));
        }
        if end - start >= MANY_HOSTS as u64 * 1000 {
            return Err(malformed("is far too large"));
        }
        let width = if low.len() > 1 && low.starts_with('0') {
            low.len()
        } else {
            0
        };
        numbers.extend((start..=end).map(|n| format!("{n:0width$}")));
    }
    Ok(numbers)
}

/// The items of a comma-separated list of hosts (`--from a,node[1,3]`): a comma inside a
/// range's brackets belongs to the range; empty items are dropped.
pub fn split_list(text: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(String::new());
                continue;
            }
            _ => {}
        }
        items.last_mut().expect("one item at least").push(c);
    }
    items.retain(|item| !item.is_empty());
    items
}

/// The hosts of a hosts file: one `HOST [TOKEN]` a line (HOST may be a range, its hosts sharing
/// the token), `#` starts a comment, blank lines are skipped. `name` names the file in errors.
/// Errors: a line of more than two columns, a malformed range, no host at all, more than
/// `limit` hosts.
pub fn parse_hosts_file(
    text: &str,
    name: &str,
    limit: usize,
) -> Result<Vec<HostEntry>, HostsError> {
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        let columns: Vec<&str> = line.split_whitespace().collect();
        let (pattern, token) = match columns[..] {
            [] => continue,
            [host] => (host, None),
            [host, token] => (host, Some(token.to_string())),
            _ => {
                return Err(error(format!(
                    "{name}:{}: {} columns; a line is HOST [TOKEN]",
                    number + 1,
                    columns.len()
                )));
            }
        };
        let hosts =
            expand(pattern, limit).map_err(|err| error(format!("{name}:{}: {err}", number + 1)))?;
        entries.extend(hosts.into_iter().map(|host| HostEntry {
            host,
            token: token.clone(),
        }));
        if entries.len() > limit {
            return Err(error(format!(
                "{name} names more than {limit} hosts; give --yes if you mean it"
            )));
        }
    }
    if entries.is_empty() {
        return Err(error(format!(
            "{name} names no host; write one HOST [TOKEN] a line"
        )));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_keeps_the_zero_padding_of_its_first_number() {
        assert_eq!(
            expand("node[01-03]", MANY_HOSTS).unwrap(),
            ["node01", "node02", "node03"]
        );
        assert_eq!(expand("n[8-10]", MANY_HOSTS).unwrap(), ["n8", "n9", "n10"]);
    }

    #[test]
    fn a_range_takes_lists_suffixes_and_ip_addresses() {
        assert_eq!(
            expand("node[1,3,5-7]:5302", MANY_HOSTS).unwrap(),
            [
                "node1:5302",
                "node3:5302",
                "node5:5302",
                "node6:5302",
                "node7:5302"
            ]
        );
        assert_eq!(
            expand("10.0.0.[1-2]", MANY_HOSTS).unwrap(),
            ["10.0.0.1", "10.0.0.2"]
        );
    }

    #[test]
    fn two_ranges_in_one_name_give_every_combination() {
        assert_eq!(
            expand("r[1-2]n[1-2]", MANY_HOSTS).unwrap(),
            ["r1n1", "r1n2", "r2n1", "r2n2"]
        );
    }

    #[test]
    fn brackets_around_an_ipv6_address_are_not_a_range() {
        assert_eq!(expand("[::1]:5301", MANY_HOSTS).unwrap(), ["[::1]:5301"]);
    }

    #[test]
    fn a_malformed_range_is_refused_with_how_to_write_one() {
        for bad in ["node[1-", "node[a-b]", "node[3-1]", "node[]", "node[1,,2]"] {
            let err = expand(bad, MANY_HOSTS).unwrap_err();
            assert!(err.0.contains(bad), "{bad}: {err}");
            assert!(err.0.contains("node[01-08]"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_range_past_the_limit_is_refused_naming_yes() {
        let err = expand("node[1-1001]", MANY_HOSTS).unwrap_err();
        assert!(
            err.0.contains("1001 hosts") && err.0.contains("--yes"),
            "{err}"
        );
        assert_eq!(expand("node[1-1001]", usize::MAX).unwrap().len(), 1001);
    }

    #[test]
    fn a_list_of_hosts_keeps_the_commas_of_its_ranges() {
        assert_eq!(
            split_list("a,node[1,3-4],[::1]:5301,"),
            ["a", "node[1,3-4]", "[::1]:5301"]
        );
    }

    #[test]
    fn a_hosts_file_takes_tokens_comments_blank_lines_and_ranges() {
        let text = "# the rack\n\nnode[1-2] secret-a\nnode3   # no token\n  node4 secret-b  \n";
        let entries = parse_hosts_file(text, "hosts", MANY_HOSTS).unwrap();
        let token = |t: &str| Some(t.to_string());
        assert_eq!(
            entries,
            [
                HostEntry {
                    host: "node1".into(),
                    token: token("secret-a")
                },
                HostEntry {
                    host: "node2".into(),
                    token: token("secret-a")
                },
                HostEntry {
                    host: "node3".into(),
                    token: None
                },
                HostEntry {
                    host: "node4".into(),
                    token: token("secret-b")
                },
            ]
        );
    }

    #[test]
    fn an_empty_or_malformed_hosts_file_is_refused_naming_the_line() {
        let empty = parse_hosts_file("# nothing\n\n", "hosts", MANY_HOSTS).unwrap_err();
        assert!(empty.0.contains("names no host"), "{empty}");
        let three = parse_hosts_file("a\nb t extra\n", "hosts", MANY_HOSTS).unwrap_err();
        assert!(three.0.starts_with("hosts:2: 3 columns"), "{three}");
        let range = parse_hosts_file("node[2-1]\n", "hosts", MANY_HOSTS).unwrap_err();
        assert!(range.0.starts_with("hosts:1: "), "{range}");
    }
}
