//! The receive rate, and what the rounds add up to.
//!
//! The rate is what reached the receiver's UDP layer over a fixed window:
//! the growth of `InDatagrams + RcvbufErrors + NoPorts` in the receiver
//! namespace's `/proc/net/snmp` (the sink is not read during the blast, so
//! nearly all of it is `RcvbufErrors`), divided by the time between the
//! two readings. A round measures every filter at every size; a cell of
//! the table is the median over the rounds of the filter's rate divided
//! by the no-filter rate of the same round, size and traffic, so that
//! noise which moves a whole round cancels out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use sg_tests::Netns;

use crate::filters::Filter;
use crate::traffic::Traffic;

/// Packets the receiver's UDP layer has seen, read in its namespace.
pub fn udp_received(rx: &Netns) -> Result<u64> {
    // /proc/thread-self/net is the namespace of the reading thread, which
    // `run_in` puts in the receiver's (/proc/net would be the process's).
    let snmp = rx
        .run_in(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))
        .context("reading the receiver's /proc/net/snmp")?;
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        bail!("no Udp lines in /proc/net/snmp");
    };
    let fields: BTreeMap<&str, u64> = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter_map(|(n, v)| Some((n, v.parse().ok()?)))
        .collect();
    ["InDatagrams", "RcvbufErrors", "NoPorts"]
        .iter()
        .map(|f| {
            fields
                .get(f)
                .copied()
                .with_context(|| format!("no Udp {f}"))
        })
        .sum()
}

/// A reading of the counter, with when it was taken.
pub struct Reading {
    packets: u64,
    at: Instant,
}

impl Reading {
    pub fn take(rx: &Netns) -> Result<Reading> {
        let packets = udp_received(rx)?;
        Ok(Reading {
            packets,
            at: Instant::now(),
        })
    }

    /// Packets per second from `earlier` to this reading, and the packets.
    pub fn rate_since(&self, earlier: &Reading) -> (f64, u64) {
        let packets = self.packets.saturating_sub(earlier.packets);
        let secs = self.at.duration_since(earlier.at).as_secs_f64();
        (packets as f64 / secs.max(1e-9), packets)
    }
}

/// One measurement: a filter at a size, with one traffic, in one round.
#[derive(Clone, Debug)]
pub struct Sample {
    pub round: usize,
    pub rules: usize,
    pub filter: Filter,
    pub traffic: Traffic,
    pub pps: f64,
}

/// A cell of the result: the median ratio to no filter (1.0 for no filter
/// itself) and the median absolute rate.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    pub ratio: f64,
    pub pps: f64,
}

/// The medians, by (rules, traffic) and filter.
pub struct Summary {
    pub rounds: usize,
    pub rules: Vec<usize>,
    pub traffics: Vec<Traffic>,
    pub filters: Vec<Filter>,
    cells: BTreeMap<(usize, Traffic, Filter), Cell>,
}

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

impl Summary {
    /// Medians of `samples`; a round without a no-filter sample for a
    /// (rules, traffic) gives no ratios there.
    pub fn new(
        samples: &[Sample],
        rules: &[usize],
        traffics: &[Traffic],
        filters: &[Filter],
    ) -> Summary {
        let rounds = samples.iter().map(|s| s.round + 1).max().unwrap_or(0);
        let find = |round, n, traffic, filter| {
            samples
                .iter()
                .find(|s| {
                    s.round == round && s.rules == n && s.traffic == traffic && s.filter == filter
                })
                .map(|s| s.pps)
        };
        let mut cells = BTreeMap::new();
        for &n in rules {
            for &traffic in traffics {
                for &filter in filters {
                    let mut ratios = Vec::new();
                    let mut rates = Vec::new();
                    for round in 0..rounds {
                        let Some(pps) = find(round, n, traffic, filter) else {
                            continue;
                        };
                        rates.push(pps);
                        if let Some(base) = find(round, n, traffic, Filter::None) {
                            ratios.push(pps / base);
                        }
                    }
                    if let (Some(ratio), Some(pps)) = (median(ratios), median(rates)) {
                        cells.insert((n, traffic, filter), Cell { ratio, pps });
                    }
                }
            }
        }
        Summary {
            rounds,
            rules: rules.to_vec(),
            traffics: traffics.to_vec(),
            filters: filters.to_vec(),
            cells,
        }
    }

    pub fn cell(&self, rules: usize, traffic: Traffic, filter: Filter) -> Option<Cell> {
        self.cells.get(&(rules, traffic, filter)).copied()
    }

    /// The result as a markdown table: per row a size and a traffic, per
    /// column a filter's median ratio to no filter; the no-filter column
    /// gives its median rate.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| rules | traffic |");
        for f in &self.filters {
            write!(out, " {} |", f.label()).expect("writing to a String");
        }
        out.push_str("\n|---|---|");
        out.push_str(&"---|".repeat(self.filters.len()));
        out.push('\n');
        for &n in &self.rules {
            for &traffic in &self.traffics {
                write!(out, "| {n} | {} |", traffic.label()).expect("writing to a String");
                for &f in &self.filters {
                    let text = match self.cell(n, traffic, f) {
                        None => "–".to_owned(),
                        Some(c) if f == Filter::None => {
                            format!("1.00 ({:.0} kpps)", c.pps / 1000.0)
                        }
                        Some(c) => format!("{:.2}", c.ratio),
                    };
                    write!(out, " {text} |").expect("writing to a String");
                }
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn ratios_are_taken_within_a_round() {
        let s = |round, filter, pps| Sample {
            round,
            rules: 10,
            filter,
            traffic: Traffic::New,
            pps,
        };
        // Round 1 is twice as fast for everyone: the ratio stays 0.5.
        let samples = [
            s(0, Filter::None, 100.0),
            s(0, Filter::Sg, 50.0),
            s(1, Filter::None, 200.0),
            s(1, Filter::Sg, 100.0),
            s(2, Filter::None, 100.0),
            s(2, Filter::Sg, 50.0),
        ];
        let sum = Summary::new(
            &samples,
            &[10],
            &[Traffic::New],
            &[Filter::None, Filter::Sg],
        );
        let sg = sum.cell(10, Traffic::New, Filter::Sg).unwrap();
        assert_eq!((sg.ratio, sg.pps), (0.5, 50.0));
        let table = sum.markdown();
        assert!(
            table.contains("| 10 | every packet a new flow | 1.00 (0 kpps) | 0.50 |"),
            "{table}"
        );
    }
}
