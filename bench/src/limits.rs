//! Operating-system limits a load run must fit: open files, ephemeral
//! ports and memory.
//!
//! Every connection holds one file descriptor on each side, so a run of N
//! connections needs N descriptors (plus a few for the poller, the
//! terminal and the standard streams) in the client process, and as many
//! in the server process. A run that cannot fit is refused before it
//! starts, instead of failing half way with `EMFILE`.
//!
//! Messages are held whole in memory, several times over (the message, its
//! copy in the send queue, the echo being reassembled), so a message size
//! is checked against the memory the kernel says is available before
//! anything is allocated. All arithmetic on counts given on the command
//! line saturates: a huge count is refused, never wrapped.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};

/// Descriptors kept free for everything that is not a connection: the
/// poller, its waker, standard streams, `/proc` files, the terminal.
pub const FD_MARGIN: u64 = 64;

/// Connections one source address may open to one destination before its
/// ephemeral ports (28,232 by default on Linux) run short, with room left.
pub const PORTS_PER_SOURCE: u64 = 20_000;

/// The soft limit on open files (`RLIMIT_NOFILE`) of this process, raised
/// to the hard limit first when it is lower and `wanted` is above it.
pub fn open_files_limit(wanted: u64) -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if wanted <= limit.rlim_cur || limit.rlim_cur >= limit.rlim_max {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: wanted.min(limit.rlim_max),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: `raised` is a valid rlimit; failure leaves the old limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return Ok(raised.rlim_cur);
    }
    Ok(limit.rlim_cur)
}

/// A run that needs more descriptors than a process may open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooManyFiles {
    /// Which process: `this process` or `the server child`.
    pub who: &'static str,
    /// Connections asked for.
    pub connections: u64,
    /// The process's open-file limit.
    pub limit: u64,
}

impl TooManyFiles {
    /// The most connections that fit the limit.
    pub fn most(&self) -> u64 {
        self.limit.saturating_sub(FD_MARGIN)
    }
}

impl fmt::Display for TooManyFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections need about {} open files in {}, but its open-file limit \
             (RLIMIT_NOFILE) is {} and cannot be raised here; run at most {} connections \
             (the embedded default `tern run` uses 10,000, which fits)",
            self.connections,
            self.connections.saturating_add(FD_MARGIN),
            self.who,
            self.limit,
            self.most()
        )
    }
}

impl std::error::Error for TooManyFiles {}

/// Checks that `connections` fit a process whose open-file limit is
/// `limit`.
pub fn check_fits(connections: u64, limit: u64, who: &'static str) -> Result<(), TooManyFiles> {
    if connections.saturating_add(FD_MARGIN) <= limit {
        return Ok(());
    }
    Err(TooManyFiles {
        who,
        connections,
        limit,
    })
}

/// Checks that `connections` fit this process, raising its soft limit to
/// the hard one if that is what it takes.
pub fn check_this_process(connections: u64) -> Result<(), String> {
    let limit = open_files_limit(connections.saturating_add(FD_MARGIN))
        .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
    check_fits(connections, limit, "this process").map_err(|e| e.to_string())
}

/// The local source addresses client connections are spread over.
///
/// `requested` is the `--sources` option. Without it, a run of more than
/// 1,000 connections to an IPv4 loopback target uses
/// `ceil(n / 20,000) + 1` addresses `127.0.0.1`, `127.0.0.2`, ... (each has
/// its own ephemeral ports); smaller runs and other targets let the kernel
/// choose. An empty list means the kernel chooses.
pub fn source_addresses(
    connections: u64,
    loopback_v4: bool,
    requested: Option<u64>,
) -> Result<Vec<IpAddr>, String> {
    let count = match requested {
        Some(k) if k > 1 && !loopback_v4 => {
            return Err(format!(
                "--sources {k} needs an IPv4 loopback target (127.x.x.x): other addresses \
                 cannot be bound as local sources"
            ))
        }
        Some(k) if k > 254 => return Err(format!("--sources {k} is more than 254 addresses")),
        Some(k) => k,
        None if loopback_v4 && connections > 1000 => connections
            .div_ceil(PORTS_PER_SOURCE)
            .saturating_add(1)
            .min(254),
        None => 0,
    };
    // One address is what the kernel picks anyway, and letting it choose
    // at connect time shares ports across destinations.
    if count <= 1 {
        return Ok(Vec::new());
    }
    Ok((1..=count)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8)))
        .collect())
}

/// A run whose messages need more memory than is available.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooLittleMemory {
    /// The option that sets the size, e.g. `--size 100GB`.
    pub option: String,
    /// Bytes the run would hold at its peak.
    pub needed: u64,
    /// What those bytes are, e.g. `the message, its queued copy and its
    /// echo`.
    pub what: &'static str,
    /// `MemAvailable` from `/proc/meminfo`, in bytes.
    pub available: u64,
}

impl fmt::Display for TooLittleMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} needs about {} of memory ({}), but only {} is available \
             (MemAvailable in /proc/meminfo); use a smaller size",
            self.option,
            crate::units::bytes(self.needed),
            self.what,
            crate::units::bytes(self.available)
        )
    }
}

impl std::error::Error for TooLittleMemory {}

/// Bytes a run holds at its peak when `copies` copies of a `size`-byte
/// message are alive at once, saturating at `u64::MAX`.
pub fn message_memory(size: u64, copies: u64) -> u64 {
    size.saturating_mul(copies)
}

/// Checks that `needed` bytes fit in `available`.
pub fn check_memory(
    option: String,
    needed: u64,
    what: &'static str,
    available: u64,
) -> Result<(), TooLittleMemory> {
    if needed <= available {
        return Ok(());
    }
    Err(TooLittleMemory {
        option,
        needed,
        what,
        available,
    })
}

/// Checks `needed` bytes against the memory available on this machine.
/// When `/proc/meminfo` cannot be read the check is skipped, and an
/// allocation that fails later is still reported as an error, not an abort.
pub fn check_this_machine(option: String, needed: u64, what: &'static str) -> Result<(), String> {
    let Ok(available) = crate::procfs::mem_available_bytes() else {
        return Ok(());
    };
    check_memory(option, needed, what, available).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_within_the_margin() {
        assert!(check_fits(10_000, 20_000, "this process").is_ok());
        assert!(check_fits(19_936, 20_000, "this process").is_ok());
        let err = check_fits(50_000, 20_000, "this process").unwrap_err();
        assert_eq!(err.most(), 19_936);
        let text = err.to_string();
        assert!(text.contains("50000 connections"), "{text}");
        assert!(text.contains("20000"), "{text}");
        assert!(text.contains("at most 19936"), "{text}");
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let err = check_fits(u64::MAX, 20_000, "this process").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("need about {} open files", u64::MAX)),
            "{text}"
        );
        assert_eq!(source_addresses(u64::MAX, true, None).unwrap().len(), 254);
        assert!(source_addresses(10, true, Some(u64::MAX)).is_err());
        assert_eq!(message_memory(u64::MAX, 3), u64::MAX);
    }

    #[test]
    fn memory_must_fit() {
        assert!(check_memory("--size 1MB".into(), 3_000_000, "x", 4_000_000).is_ok());
        let err = check_memory(
            "--size 100GB".into(),
            message_memory(100_000_000_000, 3),
            "the message, its queued copy and its echo",
            8 << 30,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--size 100GB needs about 279.4 GiB of memory (the message, its queued copy \
             and its echo), but only 8.0 GiB is available (MemAvailable in /proc/meminfo); \
             use a smaller size"
        );
    }

    #[test]
    fn sources_default_by_count() {
        assert!(source_addresses(500, true, None).unwrap().is_empty());
        let two = source_addresses(10_000, true, None).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_addresses(45_000, true, None).unwrap().len(), 4);
        assert!(source_addresses(10_000, false, None).unwrap().is_empty());
    }

    #[test]
    fn sources_requested() {
        assert_eq!(source_addresses(10, true, Some(3)).unwrap().len(), 3);
        assert!(source_addresses(10, true, Some(1)).unwrap().is_empty());
        assert!(source_addresses(10, false, Some(2)).is_err());
        assert!(source_addresses(10, true, Some(300)).is_err());
    }
}
