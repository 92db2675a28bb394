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
