//! File-descriptor budget: every TCP probe holds a socket, and a scan must never run the
//! process out of descriptors (RLIMIT_NOFILE).

/// Descriptors kept free for everything else (UDP sockets, stdio, files, the runtime).
pub const RESERVED_FDS: u64 = 64;

/// Raise the soft RLIMIT_NOFILE to the hard limit (best effort) and return the soft limit now
/// in force.
pub fn raise_nofile() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: all-zero is a valid rlimit; getrlimit/setrlimit only read/write it.
        let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a live rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: a valid pointer to a live rlimit.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    }
    #[cfg(not(unix))]
    {
        8192
    }
}

/// How many TCP sockets a run may hold open at once: `requested`, capped by the descriptor
/// limit less [`RESERVED_FDS`] (at least 1).
pub fn tcp_budget(requested: usize) -> usize {
    let limit = raise_nofile().saturating_sub(RESERVED_FDS).max(1);
    requested
        .min(usize::try_from(limit).unwrap_or(usize::MAX))
        .max(1)
}

/// Descriptors this process has open now (the entries of /proc/self/fd), where that can be
/// read.
pub fn open_descriptors() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64)
}

/// Descriptors the process can still open: the soft limit (raised to the hard limit first)
/// less those open now (less [`RESERVED_FDS`] where the count cannot be read).
pub fn free_descriptors() -> u64 {
    raise_nofile().saturating_sub(open_descriptors().unwrap_or(RESERVED_FDS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_never_exceeds_the_limit() {
        let limit = raise_nofile();
        assert!(tcp_budget(usize::MAX) as u64 <= limit.saturating_sub(RESERVED_FDS).max(1));
        assert_eq!(tcp_budget(0), 1);
        assert_eq!(tcp_budget(5), 5);
        assert!(free_descriptors() <= limit);
        #[cfg(target_os = "linux")]
        assert!(open_descriptors().is_some_and(|n| n >= 3));
    }
}
