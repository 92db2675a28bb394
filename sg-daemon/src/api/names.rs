//! Small helpers the read-only views share: the bound interface of a name,
//! names of modes, policies, ports, protocols and interfaces.

use crate::model::{self, BindingMode, Config, Direction, PortRange};

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

pub(super) fn protocol_name(p: u8) -> String {
    model::Protocol::Number(p).to_string()
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

/// How sessions and interface counters name a direction: `inbound` or
/// `outbound`.
pub(super) fn bound_name(dir: Direction) -> &'static str {
    match dir {
        Direction::Ingress => "inbound",
        Direction::Egress => "outbound",
    }
}
