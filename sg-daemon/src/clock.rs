//! The clock the kernel program stamps sessions with, read from userspace.

/// Now, in nanoseconds on `CLOCK_BOOTTIME`: the clock of the kernel's
/// `bpf_ktime_get_boot_ns`, which the eBPF program stamps sessions with.
/// Unlike `CLOCK_MONOTONIC` it keeps counting while the host is suspended,
/// so times read here compare with the kernel's stamps.
pub fn boot_time_ns() -> u64 {
    // Fails only for an unknown clock id; Linux has had this one since 2.6.39.
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .expect("CLOCK_BOOTTIME is available");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Now, in nanoseconds since the Unix epoch (`CLOCK_REALTIME`).
fn real_time_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME)
        .expect("CLOCK_REALTIME is available");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// The wall-clock time (nanoseconds since the Unix epoch) of a kernel stamp
/// on `CLOCK_BOOTTIME`, by the current offset between the two clocks (so a
/// later change of the wall clock moves it, as it moves `date`).
pub fn boot_to_unix_ns(boot_ns: u64) -> u64 {
    let offset = real_time_ns().saturating_sub(boot_time_ns());
    offset.saturating_add(boot_ns)
}

/// RFC 3339 in UTC with milliseconds: `2026-12-01T16:30:05.123Z`.
pub fn rfc3339_utc(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let millis = unix_ns % 1_000_000_000 / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (1_796_142_245, "2026-12-01T16:24:05.000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000Z"),
        ] {
            assert_eq!(rfc3339_utc(secs * 1_000_000_000), text);
        }
        assert_eq!(rfc3339_utc(1_500_000_000), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn a_stamp_of_now_is_now() {
        let real = real_time_ns();
        let from_boot = boot_to_unix_ns(boot_time_ns());
        assert!(
            from_boot.abs_diff(real) < 1_000_000_000,
            "{from_boot} {real}"
        );
    }
}
