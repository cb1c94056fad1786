//! What the bench reads from and asks of the operating system: a process's
//! RSS and CPU time from `/proc`, and the open-file limit.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`, fixed at
/// 100 in Linux's user ABI).
const USER_HZ: f64 = 100.0;

/// The resident set size of process `pid` in bytes (`VmRSS` of
/// `/proc/PID/status`).
pub fn vm_rss(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_vm_rss(&text).ok_or_else(|| format!("{path}: no VmRSS line"))
}

/// `VmRSS:   1234 kB` to bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line.split_whitespace().skip(1);
    let kib: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => kib.checked_mul(1024),
        _ => None,
    }
}

/// CPU time (user + system) process `pid` has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&text).map(|t| {
        #[allow(clippy::cast_precision_loss)]
        let t = t as f64;
        t / USER_HZ
    })
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The
/// command name (field 2) may hold spaces and parentheses: fields are
/// counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11); // fields 3..=13
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The open-file limit (soft) of process `pid` from `/proc/PID/limits`;
/// `None` when unreadable or unlimited.
pub fn open_file_limit(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Makes sure this process may open `needed` files, raising its soft
/// RLIMIT_NOFILE up to the hard limit if it must. Returns the soft limit
/// now in force, or an error saying why `needed` cannot be had.
pub fn ensure_open_files(needed: u64) -> Result<u64, String> {
    let lim = getrlimit(Resource::Nofile);
    let soft = lim.current.unwrap_or(u64::MAX);
    if soft >= needed {
        return Ok(soft);
    }
    let hard = lim.maximum.unwrap_or(u64::MAX);
    let want = needed.min(hard);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(want),
            maximum: lim.maximum,
        },
    )
    .map_err(|e| format!("cannot raise RLIMIT_NOFILE from {soft} to {want}: {e}"))?;
    if want < needed {
        return Err(format!(
            "RLIMIT_NOFILE: {needed} files needed but the hard limit is {hard} \
             (raise it, e.g. `ulimit -Hn {needed}` as root, or open fewer connections)"
        ));
    }
    Ok(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tmosquitto\nVmPeak:\t  9000 kB\nVmRSS:\t    6144 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(6144 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_ticks_are_counted_after_a_command_name_with_spaces() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_a_readable_rss_and_cpu_time() {
        let me = std::process::id();
        assert!(vm_rss(me).unwrap() > 0);
        assert!(cpu_seconds(me).is_some());
        assert!(open_file_limit(me).is_some_and(|n| n > 0));
    }

    #[test]
    fn a_small_open_file_need_is_met_without_change() {
        let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        assert_eq!(ensure_open_files(16), Ok(soft));
    }
}
