//! `[datastore]` (SPEC §8): `kind`, the etcd endpoints, the prefix, this
//! host's id, TLS files and the lease. With `kind = "etcd"` the file keeps
//! only host settings and bindings: shared objects in it are refused (they
//! would silently differ from the fleet's).

use std::path::{Path, PathBuf};

use super::Validator;
use crate::{
    config::{
        limits::{LEASE_TTL_DEFAULT_SECS, LEASE_TTL_RANGE},
        schema::{Datastore, Document},
    },
    fleet::{FleetSettings, TlsFiles},
};

impl Validator {
    pub(super) fn datastore(&mut self, doc: &Document) -> Option<FleetSettings> {
        let raw: &Datastore = doc.datastore.as_ref()?;
        match raw.kind.as_deref() {
            None | Some("file") => {
                let etcd_only = [
                    ("endpoints", !raw.endpoints.is_empty()),
                    ("prefix", raw.prefix.is_some()),
                    ("host_id", raw.host_id.is_some()),
                    ("ca_file", raw.ca_file.is_some()),
                    ("cert_file", raw.cert_file.is_some()),
                    ("key_file", raw.key_file.is_some()),
                    ("lease_ttl_secs", raw.lease_ttl_secs.is_some()),
                ];
                for (field, set) in etcd_only {
                    if set {
                        self.error(format!("datastore.{field}"), "only with kind = \"etcd\"");
                    }
                }
                return None;
            }
            Some("etcd") => {}
            Some(other) => {
                self.error(
                    "datastore.kind",
                    format!("{other:?} is not a datastore; allowed: \"file\" (default), \"etcd\""),
                );
                return None;
            }
        }
        self.shared_objects_elsewhere(doc);
        if raw.endpoints.is_empty() {
            self.error(
                "datastore.endpoints",
                "required with kind = \"etcd\"; allowed: URLs such as \"http://192.0.2.250:2379\"",
            );
        }
        for (i, e) in raw.endpoints.iter().enumerate() {
            if !valid_endpoint(e) {
                self.error(
                    format!("datastore.endpoints[{i}]"),
                    format!("{e:?} is not an endpoint; allowed: \"http://HOST:PORT\" or \"https://HOST:PORT\""),
                );
            }
        }
        let prefix = raw.prefix.clone().unwrap_or_else(|| "/sg".into());
        let prefix_ok = prefix.starts_with('/')
            && prefix.len() <= 128
            && !prefix.contains("//")
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c));
        if !prefix_ok {
            self.error(
                "datastore.prefix",
                format!("{prefix:?} is not a prefix; allowed: \"/\" then letters, digits, '-', '_', '.', '/' (default \"/sg\")"),
            );
        }
        let host_id = raw.host_id.clone().unwrap_or_else(host_name);
        self.id("datastore.host_id", &host_id, "");
        let lease_ttl_secs = match raw.lease_ttl_secs {
            None => LEASE_TTL_DEFAULT_SECS,
            Some(t) if LEASE_TTL_RANGE.contains(&t) => t as u64,
            Some(t) => {
                self.error(
                    "datastore.lease_ttl_secs",
                    format!(
                        "{t} is out of range; allowed: {}..={} seconds (default {LEASE_TTL_DEFAULT_SECS})",
                        LEASE_TTL_RANGE.start(),
                        LEASE_TTL_RANGE.end()
                    ),
                );
                LEASE_TTL_DEFAULT_SECS
            }
        };
        let tls = self.tls(raw);
        // The scheme says whether to speak TLS: it must agree with ca_file.
        let scheme = if tls.is_some() { "https://" } else { "http://" };
        for (i, e) in raw.endpoints.iter().enumerate() {
            if valid_endpoint(e) && !e.starts_with(scheme) {
                self.error(
                    format!("datastore.endpoints[{i}]"),
                    match tls {
                        Some(_) => format!("{e:?} is not TLS; allowed with ca_file: \"https://HOST:PORT\""),
                        None => format!("{e:?} needs TLS; allowed: \"http://HOST:PORT\", or set ca_file for https"),
                    },
                );
            }
        }
        Some(FleetSettings {
            endpoints: raw.endpoints.clone(),
            prefix: prefix.trim_end_matches('/').to_owned(),
            host_id,
            tls,
            lease_ttl_secs,
        })
    }

    /// `ca_file` turns TLS on; `cert_file` and `key_file` (both or
    /// neither) add a client identity.
    fn tls(&mut self, raw: &Datastore) -> Option<TlsFiles> {
        let mut path = |field: &str, value: &Option<String>| -> Option<PathBuf> {
            let v = value.as_ref()?;
            if Path::new(v).is_absolute() {
                Some(PathBuf::from(v))
            } else {
                self.error(
                    format!("datastore.{field}"),
                    format!("{v:?} is not an absolute path; allowed: an absolute file path"),
                );
                None
            }
        };
        let ca = path("ca_file", &raw.ca_file);
        let cert = path("cert_file", &raw.cert_file);
        let key = path("key_file", &raw.key_file);
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                self.error(
                    "datastore.cert_file",
                    "cert_file and key_file go together (a client certificate and its key)",
                );
                None
            }
        };
        match ca {
            Some(ca_file) => Some(TlsFiles { ca_file, identity }),
            None => {
                if identity.is_some() {
                    self.error(
                        "datastore.ca_file",
                        "required with cert_file and key_file: the CA that signed etcd's certificate",
                    );
                }
                None
            }
        }
    }

    /// With etcd, shared objects in the file are refused, each named.
    fn shared_objects_elsewhere(&mut self, doc: &Document) {
        self.groups_elsewhere = true;
        let why = "with [datastore] kind = \"etcd\" groups, lists and snapshot policies live in etcd \
                   (seed an empty prefix with `sgctl datastore push FILE`); this file keeps \
                   [daemon], [datastore] and [[interface]]";
        let kinds = [
            ("security_group", doc.security_group.len()),
            ("prefix_list", doc.prefix_list.len()),
            ("port_list", doc.port_list.len()),
            ("snapshot_policy", doc.snapshot_policy.len()),
        ];
        for (kind, n) in kinds {
            for i in 0..n {
                self.error(format!("{kind}[{i}]"), why);
            }
        }
    }
}

fn valid_endpoint(e: &str) -> bool {
    let Some(rest) = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
    else {
        return false;
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && port.parse::<u16>().is_ok_and(|p| p > 0)
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
}

/// The host name: the default `host_id`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
