//! What a server process costs, read from Linux's `/proc`.
//!
//! - resident memory: `VmRSS` in `/proc/PID/status`;
//! - CPU time: `utime` + `stime` (fields 14 and 15) of `/proc/PID/stat`, in
//!   clock ticks; a [`CpuSampler`] turns deltas into percent of one core;
//! - open-file limit: the `Max open files` line of `/proc/PID/limits`;
//! - memory available for new allocations: `MemAvailable` in
//!   `/proc/meminfo`.

use std::fs;
use std::io;
use std::time::Instant;

/// Resident set size of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).ok_or_else(|| io::Error::other("no VmRSS line in /proc/PID/status"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    parse_kib_field(status, "VmRSS:")
}

/// The value of a `Name:   1234 kB` line, in bytes.
fn parse_kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// Memory available for new allocations without swapping, in bytes.
pub fn mem_available_bytes() -> io::Result<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo")?;
    parse_kib_field(&meminfo, "MemAvailable:")
        .ok_or_else(|| io::Error::other("no MemAvailable line in /proc/meminfo"))
}

/// User plus system CPU time of process `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat).ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself, so fields are counted from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The soft open-file limit of process `pid`; `None` when unlimited.
pub fn open_files_limit(pid: u32) -> io::Result<Option<u64>> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits"))?;
    parse_open_files(&limits).ok_or_else(|| io::Error::other("no Max open files line"))
}

fn parse_open_files(limits: &str) -> Option<Option<u64>> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(None);
    }
    Some(Some(soft.parse().ok()?))
}

/// Clock ticks per second, the unit of `/proc/PID/stat` times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Turns successive CPU-time readings of one process into percent of one
/// core over the wall time between them.
#[derive(Debug)]
pub struct CpuSampler {
    pid: u32,
    ticks_per_second: f64,
    last: Option<(u64, Instant)>,
}

impl CpuSampler {
    /// A sampler for process `pid`; the first [`CpuSampler::sample`] only
    /// sets the starting point.
    pub fn new(pid: u32) -> Self {
        CpuSampler {
            pid,
            ticks_per_second: ticks_per_second(),
            last: None,
        }
    }

    /// Percent of one core used since the previous call, or `None` on the
    /// first call or when the process is gone.
    pub fn sample(&mut self) -> Option<f64> {
        let ticks = cpu_ticks(self.pid).ok()?;
        let now = Instant::now();
        let previous = self.last.replace((ticks, now));
        let (last_ticks, last_at) = previous?;
        let wall = now.duration_since(last_at).as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        let cpu = ticks.saturating_sub(last_ticks) as f64 / self.ticks_per_second;
        Some(100.0 * cpu / wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\ttern\nVmPeak:\t  9000 kB\nVmRSS:\t    4242 kB\nThreads: 2\n";
        assert_eq!(parse_vm_rss(status), Some(4242 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn parses_mem_available() {
        let meminfo =
            "MemTotal:       32000000 kB\nMemFree:  100 kB\nMemAvailable:   20966040 kB\n";
        assert_eq!(
            parse_kib_field(meminfo, "MemAvailable:"),
            Some(20_966_040 * 1024)
        );
        assert_eq!(parse_kib_field("MemTotal: 1 kB\n", "MemAvailable:"), None);
        assert!(mem_available_bytes().unwrap() > 0);
    }

    #[test]
    fn parses_cpu_ticks_around_odd_names() {
        let stat = "123 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_open_files() {
        let limits = "Limit  Soft Limit  Hard Limit  Units\n\
                      Max open files            20000                20000                files\n";
        assert_eq!(parse_open_files(limits), Some(Some(20_000)));
        let unlimited = "Max open files  unlimited  unlimited  files\n";
        assert_eq!(parse_open_files(unlimited), Some(None));
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(cpu_ticks(pid).is_ok());
        assert!(open_files_limit(pid).is_ok());
        let mut sampler = CpuSampler::new(pid);
        assert_eq!(sampler.sample(), None);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(sampler.sample().is_some_and(|p| p >= 0.0));
    }
}
