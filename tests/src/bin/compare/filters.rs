//! The filters compared, each holding the same rules in the receiver's
//! namespace, and how each shows that it treated a flow as established
//! or every packet as new.
//!
//! Every filter is stateful and holds, in order: "pass what belongs to an
//! established flow", N rules accepting UDP from 198.51.100.0/24 to ports
//! 10001..=10000+N, then "drop the rest". The traffic goes to port
//! 10000+N: the last rule, a linear list's worst case.
//!
//! - sg: the real `sgd` on a config file, one basic group of N ingress
//!   accept rules bound to `rx0` (its session table is the state, the
//!   group's default the drop);
//! - iptables-nft (Debian's `iptables` in its nf_tables mode, named
//!   explicitly): the filter table's INPUT chain, `-m conntrack --ctstate
//!   ESTABLISHED,RELATED -j ACCEPT`, N `-s ... -p udp --dport P -j ACCEPT`
//!   rules and `-j DROP`;
//! - nftables: a chain of the input hook with `ct state
//!   established,related accept`, N `ip saddr ... udp dport P accept`
//!   rules and `drop`: a linear list like iptables;
//! - nftables with a set (a row apart): the N ports as one anonymous set
//!   in a single rule, nftables' answer to long lists.

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use sg_tests::{Daemon, Group, Netns, accept_in, groups_on};

use crate::traffic::{FLOW_PORT, Pair, RX_IF, SENDER, SOURCES};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Filter {
    /// Nothing in the receiver's namespace: the reference of each ratio.
    None,
    /// sgd enforcing a security group on rx0.
    Sg,
    /// iptables-nft: the filter table's INPUT chain.
    Iptables,
    /// nftables: one chain of N rules.
    Nftables,
    /// nftables: the N ports as one set in one rule.
    NftablesSet,
}

impl Filter {
    pub fn label(self) -> &'static str {
        match self {
            Filter::None => "no filter",
            Filter::Sg => "sg",
            Filter::Iptables => "iptables-nft",
            Filter::Nftables => "nftables",
            Filter::NftablesSet => "nftables, set",
        }
    }

    /// The commands the filter needs and the Debian packages they come in.
    pub fn tools(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Filter::None | Filter::Sg => &[],
            Filter::Iptables => &[
                ("iptables-nft", "iptables"),
                ("iptables-nft-restore", "iptables"),
                ("conntrack", "conntrack"),
            ],
            Filter::Nftables | Filter::NftablesSet => {
                &[("nft", "nftables"), ("conntrack", "conntrack")]
            }
        }
    }

    fn netfilter(self) -> bool {
        matches!(
            self,
            Filter::Iptables | Filter::Nftables | Filter::NftablesSet
        )
    }
}

/// The destination port of rule `i` (1-based).
pub fn port(i: usize) -> u16 {
    crate::traffic::BASE_PORT + u16::try_from(i).expect("at most 1000 rules")
}

/// A filter installed in the receiver's namespace. Removed with the
/// namespace (and sgd stopped) when the pair is dropped.
pub struct Installed {
    filter: Filter,
    rules: usize,
    sgd: Option<Daemon>,
}

/// How many packets the filter passed by its state (an established flow)
/// and by its rules (the last accept rule), as far as it counts them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Decided {
    pub by_state: u64,
    pub by_rules: u64,
}

pub fn install(filter: Filter, pair: &Pair, rules: usize) -> Result<Installed> {
    let mut installed = Installed {
        filter,
        rules,
        sgd: None,
    };
    match filter {
        Filter::None => {}
        Filter::Sg => {
            let group = Group::new("sg-bench").rules((1..=rules).map(|i| {
                let p = port(i);
                accept_in("udp", &format!("{p}/{p}"), SOURCES)
            }));
            let daemon = Daemon::start(&pair.rx, &groups_on(RX_IF, &[group]))
                .context("starting sgd in the receiver's namespace")?;
            installed.sgd = Some(daemon);
        }
        Filter::Iptables => {
            let mut input = String::from(
                "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                 -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n",
            );
            for i in 1..=rules {
                input.push_str(&format!(
                    "-A INPUT -s {SOURCES} -p udp -m udp --dport {} -j ACCEPT\n",
                    port(i)
                ));
            }
            input.push_str("-A INPUT -j DROP\nCOMMIT\n");
            exec_with_input(&pair.rx, &["iptables-nft-restore"], &input)?;
        }
        Filter::Nftables | Filter::NftablesSet => {
            let mut input = String::from(
                "table ip sgbench {\n  chain input {\n    \
                 type filter hook input priority filter; policy accept;\n    \
                 ct state established,related accept\n",
            );
            if filter == Filter::Nftables {
                for i in 1..=rules {
                    input.push_str(&format!(
                        "    ip saddr {SOURCES} udp dport {} accept\n",
                        port(i)
                    ));
                }
            } else {
                let ports: Vec<String> = (1..=rules).map(|i| port(i).to_string()).collect();
                input.push_str(&format!(
                    "    ip saddr {SOURCES} udp dport {{ {} }} accept\n",
                    ports.join(", ")
                ));
            }
            input.push_str("    drop\n  }\n}\n");
            exec_with_input(&pair.rx, &["nft", "-f", "-"], &input)?;
        }
    }
    Ok(installed)
}

impl Installed {
    /// Fails unless the filter holds the flow from 198.51.100.2:40000 to
    /// `port` as established (answered): netfilter's conntrack entry
    /// (`conntrack -L` in the receiver's namespace) is not `[UNREPLIED]`,
    /// sg's session (`sgctl sessions`) is in the answered table. Returns
    /// what it saw.
    pub fn check_established(&self, pair: &Pair, port: u16) -> Result<String> {
        if self.filter.netfilter() {
            let out = pair.rx.exec(&["conntrack", "-L", "-p", "udp"])?;
            let flow = format!("src={SENDER} dst=");
            let ports = format!("sport={FLOW_PORT} dport={port} ");
            let Some(entry) = out
                .lines()
                .find(|l| l.contains(&flow) && l.contains(&ports))
            else {
                bail!(
                    "{}: conntrack -L has no entry of the flow {SENDER}:{FLOW_PORT} -> :{port}:\n{out}",
                    self.filter.label()
                );
            };
            if entry.contains("UNREPLIED") {
                bail!(
                    "{}: conntrack holds the flow as unreplied, not established: {entry}",
                    self.filter.label()
                );
            }
            return Ok(format!("conntrack: {}", entry.trim()));
        }
        let Some(sgd) = &self.sgd else {
            return Ok("no filter: nothing to check".to_owned());
        };
        let sessions = sgctl_json(sgd, &["sessions", "--interface", RX_IF])?;
        let found = sessions.as_array().and_then(|all| {
            all.iter().find(|s| {
                s["protocol"] == "udp"
                    && s["local_port"] == port
                    && s["remote_port"] == FLOW_PORT
                    && s["remote"] == SENDER.to_string()
            })
        });
        let Some(session) = found else {
            bail!(
                "sg: `sgctl sessions` has no session of the flow {SENDER}:{FLOW_PORT} -> :{port}: {sessions}"
            );
        };
        if session["answered"] != true || session["state"] == "ended" {
            bail!("sg: the flow's session is not established (answered): {session}");
        }
        Ok(format!("sgctl sessions: {session}"))
    }

    /// What the filter's own counters say, where it has them: sg's
    /// per-reason counters (`session`, `rule-accept`) and iptables' rule
    /// counters (the conntrack rule, the last accept rule). nftables rules
    /// carry no counters (adding them would add their cost).
    pub fn decided(&self, pair: &Pair) -> Result<Option<Decided>> {
        match (self.filter, &self.sgd) {
            (Filter::Sg, Some(sgd)) => {
                let counters = sgctl_json(sgd, &["counters"])?;
                let sum = |reason: &str| {
                    counters["reasons"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|r| r["reason"] == reason)
                        .filter_map(|r| r["packets"].as_u64())
                        .sum::<u64>()
                };
                Ok(Some(Decided {
                    by_state: sum("session"),
                    by_rules: sum("rule-accept"),
                }))
            }
            (Filter::Iptables, _) => {
                let out = pair.rx.exec(&[
                    "iptables-nft",
                    "-L",
                    "INPUT",
                    "-v",
                    "-x",
                    "-n",
                    "--line-numbers",
                ])?;
                let packets = |num: usize| -> Result<u64> {
                    out.lines()
                        .find_map(|l| {
                            let mut f = l.split_whitespace();
                            (f.next()? == num.to_string()).then(|| f.next()?.parse().ok())?
                        })
                        .with_context(|| format!("no rule {num} in iptables' INPUT:\n{out}"))
                };
                Ok(Some(Decided {
                    by_state: packets(1)?,
                    by_rules: packets(self.rules + 1)?,
                }))
            }
            _ => Ok(None),
        }
    }

    /// After a blast of new flows: netfilter's conntrack must have made an
    /// entry for many of them (each packet was a new connection to it).
    pub fn check_new_flows(&self, pair: &Pair) -> Result<String> {
        if !self.filter.netfilter() {
            return Ok(String::new());
        }
        let out = pair.rx.exec(&["conntrack", "-C"])?;
        let count: u64 = out
            .trim()
            .parse()
            .with_context(|| format!("conntrack -C said {out:?}"))?;
        if count < 1000 {
            bail!(
                "{}: conntrack holds {count} entries after a blast of new flows: \
                 the packets were not new to it",
                self.filter.label()
            );
        }
        Ok(format!("conntrack -C: {count} entries"))
    }

    /// Empties netfilter's connection table after a blast of new flows.
    /// The kernel keeps the entries of every namespace in one hash table
    /// (`nf_conntrack_buckets`); a full table left behind would lengthen
    /// the chains that the next filter's lookups walk.
    pub fn forget_flows(&self, pair: &Pair) -> Result<()> {
        if self.filter.netfilter() {
            pair.rx.exec(&["conntrack", "-F"])?;
        }
        Ok(())
    }
}

/// Fails unless the packets the filter counted during a blast were
/// decided as `expect_state` says: by its state (established) or by its
/// rules (new flows), at least 95 % of them.
pub fn check_decided(
    filter: Filter,
    before: Decided,
    after: Decided,
    expect_state: bool,
) -> Result<String> {
    let state = after.by_state.saturating_sub(before.by_state);
    let rules = after.by_rules.saturating_sub(before.by_rules);
    let total = state + rules;
    let (what, share) = if expect_state {
        ("as established", state)
    } else {
        ("by the rules", rules)
    };
    if total == 0 || (share as f64) < 0.95 * total as f64 {
        bail!(
            "{}: of the packets it passed, {state} were passed as established and {rules} by \
             the rules: not {what}",
            filter.label()
        );
    }
    Ok(format!(
        "{}: {share} of {total} packets passed {what}",
        filter.label()
    ))
}

/// `sgctl ARGS -o json` against `sgd`, parsed.
fn sgctl_json(sgd: &Daemon, args: &[&str]) -> Result<serde_json::Value> {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let out = sgd.ctl().run(&all);
    if out.code != 0 {
        bail!("sgctl {} failed: {}", all.join(" "), out.stderr.trim());
    }
    serde_json::from_str(&out.stdout).with_context(|| format!("parsing sgctl {}", all.join(" ")))
}

/// Runs `cmd` in `ns` with `input` on its standard input.
fn exec_with_input(ns: &Netns, cmd: &[&str], input: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .args(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", cmd.join(" ")))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            cmd.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_must_be_made_the_intended_way() {
        let d = |by_state, by_rules| Decided { by_state, by_rules };
        let before = d(10, 10);
        assert!(check_decided(Filter::Sg, before, d(1010, 20), true).is_ok());
        assert!(check_decided(Filter::Sg, before, d(1010, 20), false).is_err());
        assert!(check_decided(Filter::Iptables, before, d(20, 1010), false).is_ok());
        // Half by the state is neither.
        assert!(check_decided(Filter::Sg, before, d(510, 510), true).is_err());
        assert!(check_decided(Filter::Sg, before, d(510, 510), false).is_err());
        // Nothing counted proves nothing.
        assert!(check_decided(Filter::Sg, before, before, true).is_err());
    }

    #[test]
    fn the_traffic_matches_the_last_rule() {
        assert_eq!(port(1), 10001);
        assert_eq!(port(1000), 11000);
    }
}
