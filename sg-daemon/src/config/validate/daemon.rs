//! `[daemon]`: host settings, defaults for what is left out.

use std::path::{Path, PathBuf};

use super::Validator;
use crate::{
    config::{
        limits::{
            SESSION_TABLE_SIZE_HYPERVISOR, SESSION_TABLE_SIZE_RANGE, SESSION_TIMEOUT_RANGE,
            SNAPSHOT_DELAY_DEFAULT_SECS, SNAPSHOT_DELAY_RANGE,
        },
        schema,
    },
    model::{AttachMode, DaemonSettings},
};

impl Validator {
    pub(super) fn daemon(&mut self, raw: Option<&schema::Daemon>) -> DaemonSettings {
        let mut d = DaemonSettings::default();
        let Some(raw) = raw else { return d };
        if let Some(r) = &raw.region {
            if valid_region(r) {
                d.region = r.clone();
            } else {
                self.error(
                    "daemon.region",
                    format!(
                        "{r:?} is not valid; allowed: 1 to 64 lowercase letters, digits and \"-\" (default \"local\")"
                    ),
                );
            }
        }
        for (value, name, slot) in [
            (
                raw.session_timeout_secs,
                "session_timeout_secs",
                &mut d.session_timeout_secs,
            ),
            (
                raw.syn_timeout_secs,
                "syn_timeout_secs",
                &mut d.syn_timeout_secs,
            ),
            (
                raw.tcp_closed_timeout_secs,
                "tcp_closed_timeout_secs",
                &mut d.tcp_closed_timeout_secs,
            ),
        ] {
            let Some(t) = value else { continue };
            let default = *slot;
            match u64::try_from(t) {
                Ok(secs) if SESSION_TIMEOUT_RANGE.contains(&secs) => *slot = secs,
                _ => self.error(
                    format!("daemon.{name}"),
                    format!(
                        "{t} is out of range; allowed: {}..={} seconds (default {default})",
                        SESSION_TIMEOUT_RANGE.start(),
                        SESSION_TIMEOUT_RANGE.end()
                    ),
                ),
            }
        }
        if let Some(n) = raw.session_table_size {
            match u64::try_from(n) {
                Ok(n) if SESSION_TABLE_SIZE_RANGE.contains(&n) => d.session_table_size = n as u32,
                _ => self.error(
                    "daemon.session_table_size",
                    format!(
                        "{n} is out of range; allowed: {}..={} entries (default {}, {} with a binding in hypervisor mode)",
                        SESSION_TABLE_SIZE_RANGE.start(),
                        SESSION_TABLE_SIZE_RANGE.end(),
                        sg_common::CONNTRACK_ENTRIES,
                        SESSION_TABLE_SIZE_HYPERVISOR,
                    ),
                ),
            }
        }
        d.block_smtp_egress = raw.block_smtp_egress.unwrap_or(d.block_smtp_egress);
        d.builtin_neighbor_discovery = raw
            .builtin_neighbor_discovery
            .unwrap_or(d.builtin_neighbor_discovery);
        d.builtin_dhcp_client = raw.builtin_dhcp_client.unwrap_or(d.builtin_dhcp_client);
        d.builtin_nd_redirects = raw.builtin_nd_redirects.unwrap_or(d.builtin_nd_redirects);
        d.builtin_non_ip = raw.builtin_non_ip.unwrap_or(d.builtin_non_ip);
        if let Some(a) = &raw.metrics_address {
            match a.parse::<std::net::SocketAddr>() {
                Ok(addr) => d.metrics_address = Some(addr),
                Err(_) => self.error(
                    "daemon.metrics_address",
                    format!("{a:?} is not valid; allowed: an address and port such as \"127.0.0.1:9630\" or \"[::1]:9630\""),
                ),
            }
        }
        if let Some(a) = &raw.attach {
            match AttachMode::ALL.into_iter().find(|m| m.name() == a) {
                Some(mode) => d.attach = mode,
                None => self.error(
                    "daemon.attach",
                    format!(
                        "{a:?} is not valid; allowed: \"auto\", \"tcx\", \"tc\" (default \"auto\")"
                    ),
                ),
            }
        }
        if let Some(t) = raw.snapshot_delay_secs {
            if SNAPSHOT_DELAY_RANGE.contains(&t) {
                d.snapshot_delay_secs = t as u64;
            } else {
                self.error(
                    "daemon.snapshot_delay_secs",
                    format!(
                        "{t} is out of range; allowed: {}..={} seconds (default {SNAPSHOT_DELAY_DEFAULT_SECS})",
                        SNAPSHOT_DELAY_RANGE.start(),
                        SNAPSHOT_DELAY_RANGE.end()
                    ),
                );
            }
        }
        for (value, name, slot) in [
            (&raw.state_dir, "daemon.state_dir", &mut d.state_dir),
            (&raw.runtime_dir, "daemon.runtime_dir", &mut d.runtime_dir),
            (&raw.bpffs_dir, "daemon.bpffs_dir", &mut d.bpffs_dir),
        ] {
            let Some(v) = value else { continue };
            if Path::new(v).is_absolute() {
                *slot = PathBuf::from(v);
            } else {
                self.error(
                    name,
                    format!("{v:?} is not an absolute path; allowed: an absolute directory path"),
                );
            }
        }
        d
    }
}

/// A region id, as ECS writes them (`cn-hangzhou`): it names files.
fn valid_region(r: &str) -> bool {
    (1..=64).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
