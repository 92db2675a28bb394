//! Small helpers the read-only views share: the bound interface of a name,
//! names of modes, policies, ports and protocols, interface names, session
//! addresses and the kernel's session clock.

use std::net::IpAddr;

use sg_common::FAMILY_V4;

use crate::{
    model::{self, BindingMode, Config, PortRange},
    reference,
};

pub(super) fn binding<'a>(
    config: &'a Config,
    interface: &str,
) -> Result<&'a model::InterfaceBinding, String> {
    config
        .interfaces
        .iter()
        .find(|b| b.name == interface)
        .ok_or_else(|| format!("interface {interface} is not bound"))
}

pub(super) fn mode_name(mode: BindingMode) -> &'static str {
    match mode {
        BindingMode::Instance => "instance",
        BindingMode::Hypervisor => "hypervisor",
    }
}

pub(super) fn policy_name(accept: bool) -> &'static str {
    if accept { "accept" } else { "drop" }
}

pub(super) fn ports_text(ports: &[PortRange]) -> String {
    ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A protocol of a packet: a name or a number (not `all`).
pub fn parse_packet_protocol(s: &str) -> Option<u8> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Some(reference::TCP),
        "udp" => Some(reference::UDP),
        "icmp" => Some(reference::ICMP),
        "icmpv6" => Some(reference::ICMPV6),
        "gre" => Some(model::Protocol::GRE),
        other => other.parse().ok(),
    }
}

pub(super) fn protocol_name(p: u8) -> String {
    model::Protocol::Number(p).to_string()
}

/// Current `CLOCK_BOOTTIME`, the kernel's session clock, in nanoseconds.
pub(super) fn boot_time_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

pub(super) fn key_addr(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

pub(super) fn addr_key(addr: IpAddr) -> (u8, [u8; 16]) {
    crate::compile::addr_bytes(&ipnet::IpNet::from(addr))
}

pub(super) fn ifname(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("#{ifindex}");
    }
    // SAFETY: on success the name is NUL-terminated within `buf`.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}
