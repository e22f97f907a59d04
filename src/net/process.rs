//! The conventional `process_*` metrics (the names Prometheus client
//! libraries export), so a stock dashboard works: resident and virtual
//! memory, CPU seconds, open and maximum file descriptors, start time.
//! Read from `/proc` at scrape time; on other systems nothing is exported.

use std::fmt::Write as _;

/// Clock ticks per second of the times in `/proc/<pid>/stat`: the kernel's
/// `USER_HZ`, 100 on every architecture Linux runs on but Alpha (which
/// Rust does not target).
const USER_HZ: f64 = 100.0;

/// What `/proc/self/stat` says about the process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    /// User plus system CPU time, in seconds.
    cpu_seconds: f64,
    /// Start time, in seconds after boot.
    start_after_boot: f64,
    /// Virtual memory size, in bytes.
    virtual_bytes: u64,
}

/// Parse `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may itself contain spaces and parentheses, so fields are counted
/// from the last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields 3 onwards: state is field 3, so field n is at index n - 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let (utime, stime) = (field(14)?, field(15)?);
    Some(Stat {
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        start_after_boot: field(22)? as f64 / USER_HZ,
        virtual_bytes: field(23)?,
    })
}

/// The value of `Name:   value [unit]` lines (`/proc/stat`, `/proc/<pid>/status`).
fn labelled(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))?
        .trim_start_matches(':')
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft limit on open files from `/proc/<pid>/limits`
/// (`Max open files  1024  1048576  files`); `None` when unlimited.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Append the `process_*` metrics to `out`, each that can be read.
pub(crate) fn render(out: &mut String) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let mut gauge = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    let stat = read("/proc/self/stat").as_deref().and_then(parse_stat);
    if let Some(stat) = stat {
        gauge(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            stat.cpu_seconds,
        );
        gauge(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            stat.virtual_bytes as f64,
        );
        if let Some(boot) = read("/proc/stat").and_then(|s| labelled(&s, "btime")) {
            gauge(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                boot as f64 + stat.start_after_boot,
            );
        }
    }
    if let Some(kib) = read("/proc/self/status").and_then(|s| labelled(&s, "VmRSS")) {
        gauge(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            (kib * 1024) as f64,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // Less the descriptor this listing holds open.
        let open = dir.count().saturating_sub(1);
        gauge(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            open as f64,
        );
    }
    if let Some(max) = read("/proc/self/limits")
        .as_deref()
        .and_then(max_open_files)
    {
        gauge(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with spaces and parentheses, as a process may
        // choose; fields 14, 15, 22 and 23 are 150, 50, 4200 and 9000.
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 1 0 \
                    4200 9000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let s = parse_stat(stat).unwrap();
        assert_eq!(s.cpu_seconds, 2.0);
        assert_eq!(s.start_after_boot, 42.0);
        assert_eq!(s.virtual_bytes, 9000);
        for bad in ["", "42 (a", "42 (a) S 1 2", "42 (a) S x y z"] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn labelled_lines_and_limits() {
        assert_eq!(
            labelled("cpu 1 2\nbtime 1700000000\n", "btime"),
            Some(1_700_000_000)
        );
        assert_eq!(
            labelled("VmPeak:\t 10 kB\nVmRSS:\t  2048 kB\n", "VmRSS"),
            Some(2048)
        );
        assert_eq!(labelled("VmRSS:\n", "VmRSS"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 1048576              files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            max_open_files(
                "Max open files            unlimited            unlimited            files"
            ),
            None
        );
        assert_eq!(max_open_files(""), None);
    }

    #[test]
    fn parsers_take_any_text() {
        use proptest::prelude::*;
        proptest!(|(text in "\\PC*")| {
            let _ = parse_stat(&text);
            let _ = labelled(&text, "VmRSS");
            let _ = max_open_files(&text);
        });
    }

    /// This process, read for real.
    #[cfg(target_os = "linux")]
    #[test]
    fn renders_this_process() {
        let mut text = String::new();
        render(&mut text);
        let value = |name: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing in:\n{text}"));
            line[name.len() + 1..].parse().unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 100_000.0);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_cpu_seconds_total") >= 0.0);
        let fds = value("process_open_fds");
        assert!(fds >= 3.0 && fds <= value("process_max_fds"), "{text}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
    }
}
