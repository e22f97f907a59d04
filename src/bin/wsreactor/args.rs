//! Option values: sizes with binary suffixes, bounded counts and seconds.
//! Every error names the option and says what it takes.

use std::ops::RangeInclusive;
use std::time::Duration;

/// The next value of option `--name` as a string.
pub fn value(parser: &mut lexopt::Parser, name: &str) -> Result<String, String> {
    let v = parser.value().map_err(|e| format!("--{name}: {e}"))?;
    v.into_string()
        .map_err(|v| format!("--{name}: {v:?} is not valid UTF-8"))
}

/// A byte size: digits, then optionally `K`/`KiB`, `M`/`MiB` or `G`/`GiB`
/// (any case; powers of 1024: `16M` = `16MiB` = 16777216), within `range`.
pub fn size(name: &str, s: &str, range: RangeInclusive<u64>) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits);
    let shift = match suffix.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => {
            return Err(format!(
                "--{name}: '{s}' is not a size (bytes, or with K, M, G: 16M = 16MiB = 16777216)"
            ))
        }
    };
    let bytes = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| {
            format!(
                "--{name}: '{s}' is not a size (bytes, or with K, M, G: 16M = 16MiB = 16777216)"
            )
        })?;
    in_range(name, s, bytes, &range)
}

/// A whole number within `range`.
pub fn count(name: &str, s: &str, range: RangeInclusive<u64>) -> Result<u64, String> {
    let n = s
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("--{name}: '{s}' is not a whole number"))?;
    in_range(name, s, n, &range)
}

/// Seconds, fractions allowed; zero included (it means "off" for the
/// timeouts that allow it).
pub fn seconds(name: &str, s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("--{name}: '{s}' is not a number of seconds"))?;
    if !(0.0..=MAX_SECONDS).contains(&secs) {
        return Err(format!(
            "--{name}: '{s}' is out of range (0 to {MAX_SECONDS} seconds)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A year: longer is surely a typo.
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

fn in_range(name: &str, s: &str, n: u64, range: &RangeInclusive<u64>) -> Result<u64, String> {
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "--{name}: '{s}' is out of range ({} to {})",
            range.start(),
            range.end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        let any = 0..=u64::MAX;
        for (s, want) in [
            ("0", 0),
            ("4096", 4096),
            ("16M", 16 << 20),
            ("16MiB", 16 << 20),
            ("16 mib", 16 << 20),
            ("8k", 8192),
            ("8KiB", 8192),
            ("1G", 1 << 30),
            ("3gib", 3 << 30),
            ("12B", 12),
        ] {
            assert_eq!(size("x", s, any.clone()), Ok(want), "{s}");
        }
        for s in [
            "",
            "M",
            "-1",
            "1.5M",
            "16MB",
            "16 Mi",
            "1T",
            "99999999999G",
            "0x10",
        ] {
            let e = size("max-frame", s, any.clone()).unwrap_err();
            assert!(e.starts_with("--max-frame: "), "{e}");
        }
        let e = size("max-frame", "0", 1..=100).unwrap_err();
        assert_eq!(e, "--max-frame: '0' is out of range (1 to 100)");
    }

    #[test]
    fn counts_and_seconds_name_the_option() {
        assert_eq!(count("n", "7", 1..=9), Ok(7));
        assert_eq!(
            count("max-headers", "300", 5..=256).unwrap_err(),
            "--max-headers: '300' is out of range (5 to 256)"
        );
        assert!(count("n", "1k", 0..=9)
            .unwrap_err()
            .contains("not a whole number"));
        assert_eq!(seconds("t", "0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(seconds("t", "0"), Ok(Duration::ZERO));
        for s in ["-1", "NaN", "inf", "1e30", "x", ""] {
            assert!(
                seconds("close-timeout", s)
                    .unwrap_err()
                    .starts_with("--close-timeout: "),
                "{s}"
            );
        }
    }
}
