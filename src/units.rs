//! Sizes and rates, parsed and printed in one place.
//!
//! Input follows `fallocate`, `truncate` and `fio`: `K`, `M`, `G`, `T`, `P` (and `KiB`, `MiB`, ...)
//! are powers of 1024; `KB`, `MB`, `GB`, `TB`, `PB` are powers of 1000.
//! Output is always decimal (MB = 10^6 bytes), as disks and links are sold, and every rate is
//! printed both in bytes (MB/s, GB/s) and in bits (Mb/s, Gb/s).

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// Why a size given on the command line was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SizeError {
    #[error("size is empty: give a number with an optional unit, like 4G or 512MB")]
    Empty,
    #[error("size '{0}' is negative: give a positive size like 4G")]
    Negative(String),
    #[error("size '{0}' is zero: give a positive size like 4G")]
    Zero(String),
    #[error("size '{0}' is not a number: give a size like 4G, 4GiB, 512M or 1.5TB")]
    NotANumber(String),
    #[error(
        "unknown unit '{unit}' in size '{input}': use K, M, G, T, P or KiB..PiB (powers of 1024) or KB, MB, GB, TB, PB (powers of 1000)"
    )]
    UnknownUnit { input: String, unit: String },
    #[error("size '{0}' is too large (more than 16 EiB)")]
    TooLarge(String),
}

/// Parses `50G`, `4GiB`, `512M`, `1.5TB`, `4096` into bytes (see the module doc for the units).
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(SizeError::Empty);
    }
    if text.starts_with('-') {
        return Err(SizeError::Negative(text.to_string()));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| SizeError::NotANumber(text.to_string()))?;
    let multiplier = unit_multiplier(unit.trim()).ok_or_else(|| SizeError::UnknownUnit {
        input: text.to_string(),
        unit: unit.trim().to_string(),
    })?;
    let bytes = (value * multiplier as f64).round();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(SizeError::TooLarge(text.to_string()));
    }
    if bytes < 1.0 {
        return Err(SizeError::Zero(text.to_string()));
    }
    Ok(bytes as u64)
}

fn unit_multiplier(unit: &str) -> Option<u64> {
    let lower = unit.to_ascii_lowercase();
    let (prefix, rest) = match lower.chars().next() {
        None => return Some(1),
        Some(c) => lower.split_at(c.len_utf8()),
    };
    let power = match prefix {
        "b" if rest.is_empty() => return Some(1),
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return None,
    };
    let base: u64 = match rest {
        "" | "i" | "ib" => 1024,
        "b" => 1000,
        _ => return None,
    };
    Some(base.pow(power))
}

/// A byte count printed in decimal units ("4.29 GB"), exact bytes below 1 kB.
pub fn format_bytes(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().si().to_string()
}

/// A block size the way fio and the flags take it: "1 MiB", "4 KiB", "1000 B".
pub fn format_block(bytes: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    format!("{bytes} B")
}

/// A throughput in bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Rate {
    pub bytes_per_sec: f64,
}

impl Rate {
    pub fn new(bytes: u64, elapsed: Duration) -> Rate {
        let secs = elapsed.as_secs_f64();
        let bytes_per_sec = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
        Rate { bytes_per_sec }
    }

    pub fn from_mb_per_sec(mb: f64) -> Rate {
        Rate {
            bytes_per_sec: mb * 1e6,
        }
    }

    /// Megabytes per second, MB = 10^6 bytes.
    pub fn mb_per_sec(self) -> f64 {
        self.bytes_per_sec / 1e6
    }

    /// Gigabits per second, Gb = 10^9 bits.
    pub fn gbit_per_sec(self) -> f64 {
        self.bytes_per_sec * 8.0 / 1e9
    }

    /// "2.71 GB/s" or "540 MB/s".
    pub fn bytes_text(self) -> String {
        let mb = self.mb_per_sec();
        if mb >= 1000.0 {
            format!("{} GB/s", three_digits(mb / 1000.0))
        } else if mb >= 1.0 {
            format!("{} MB/s", three_digits(mb))
        } else {
            format!("{} kB/s", three_digits(mb * 1000.0))
        }
    }

    /// "21.7 Gb/s" or "940 Mb/s".
    pub fn bits_text(self) -> String {
        let gbit = self.gbit_per_sec();
        if gbit >= 1.0 {
            format!("{} Gb/s", three_digits(gbit))
        } else {
            format!("{} Mb/s", three_digits(gbit * 1000.0))
        }
    }
}

impl fmt::Display for Rate {
    /// Both units, bytes first: "2.71 GB/s (21.7 Gb/s)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.bytes_text(), self.bits_text())
    }
}

/// Three significant digits without going to exponent notation: 2.71, 27.1, 271, 2710.
fn three_digits(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Parses a link rate in bits per second the way iperf3's -b reads it: `10G`, `2.5g`, `500M`,
/// `100k`, `1000000`, with an optional `bit/s`, `bps` or `b/s`; the prefixes are powers of 1000.
/// Returns bytes per second.
pub fn parse_bitrate(input: &str) -> Result<f64, String> {
    let text = input.trim();
    let lower = text.to_ascii_lowercase();
    let stem = ["bit/s", "bits/s", "bps", "b/s", "bit"]
        .iter()
        .find_map(|suffix| lower.strip_suffix(suffix))
        .unwrap_or(&lower);
    let (number, scale) = match stem.char_indices().last() {
        Some((at, 'k')) => (&stem[..at], 1e3),
        Some((at, 'm')) => (&stem[..at], 1e6),
        Some((at, 'g')) => (&stem[..at], 1e9),
        Some((at, 't')) => (&stem[..at], 1e12),
        _ => (stem, 1.0),
    };
    let bits = match number.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => value * scale,
        _ => {
            return Err(format!(
                "rate '{text}' is not a rate: give bits per second like 10G, 2.5G or 500M"
            ));
        }
    };
    if bits == 0.0 {
        return Err(format!(
            "rate '{text}' sends nothing (iperf3 reads -b 0 as no limit; here say it): use --max for as fast as possible, or a rate like 10G"
        ));
    }
    if bits < 8.0 {
        return Err(format!(
            "rate '{text}' is below one byte per second: give e.g. 1M"
        ));
    }
    Ok(bits / 8.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_suffixes_are_powers_of_1024_like_fallocate() {
        assert_eq!(parse_size("50G"), Ok(50 << 30));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("2Ti"), Ok(2 << 40));
    }

    #[test]
    fn decimal_suffixes_are_powers_of_1000() {
        assert_eq!(parse_size("1.5TB"), Ok(1_500_000_000_000));
        assert_eq!(parse_size("512MB"), Ok(512_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size(" 8 GB "), Ok(8_000_000_000));
    }

    #[test]
    fn bad_sizes_are_refused_with_the_reason() {
        assert_eq!(parse_size("0"), Err(SizeError::Zero("0".into())));
        assert_eq!(parse_size("-5G"), Err(SizeError::Negative("-5G".into())));
        assert!(matches!(
            parse_size("12XB"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(parse_size("G"), Err(SizeError::NotANumber(_))));
        assert!(matches!(
            parse_size("1.2.3G"),
            Err(SizeError::NotANumber(_))
        ));
        assert!(matches!(
            parse_size("99999999P"),
            Err(SizeError::TooLarge(_))
        ));
        assert_eq!(parse_size(""), Err(SizeError::Empty));
    }

    #[test]
    fn rates_print_bytes_and_bits() {
        let rate = Rate::from_mb_per_sec(2710.0);
        assert_eq!(rate.to_string(), "2.71 GB/s (21.7 Gb/s)");
        assert_eq!(
            Rate::from_mb_per_sec(117.5).to_string(),
            "118 MB/s (940 Mb/s)"
        );
        assert_eq!(
            Rate::new(1_000_000, Duration::from_secs(2)).mb_per_sec(),
            0.5
        );
        assert_eq!(Rate::new(5, Duration::ZERO).bytes_per_sec, 0.0);
    }

    #[test]
    fn byte_counts_print_in_decimal_units() {
        assert_eq!(format_bytes(4 << 30), "4.3 GB");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_block(1 << 20), "1 MiB");
        assert_eq!(format_block(12 << 10), "12 KiB");
        assert_eq!(format_block(1000), "1000 B");
    }

    #[test]
    fn bitrates_read_like_iperf3s() {
        assert_eq!(parse_bitrate("10G"), Ok(10e9 / 8.0));
        assert_eq!(parse_bitrate("2.5g"), Ok(2.5e9 / 8.0));
        assert_eq!(parse_bitrate("500Mbit/s"), Ok(500e6 / 8.0));
        assert_eq!(parse_bitrate("100kbps"), Ok(100e3 / 8.0));
        assert_eq!(parse_bitrate("8000"), Ok(1000.0));
        assert!(parse_bitrate("0").unwrap_err().contains("--max"));
        assert!(parse_bitrate("fast").unwrap_err().contains("10G"));
        assert!(parse_bitrate("-1G").is_err());
    }
}
