//! The one `Direction` of the project: a rule's, a packet's and a
//! session's direction, always seen from the protected instance (SPEC §2).
//! The kernel indexes an interface's two tables with it and stores it in
//! sessions, counters and drop records as a small integer.
//!
//! A TC hook (ingress/egress of the host's interface) is another thing: in
//! hypervisor mode the hook's ingress is the instance's egress. The daemon
//! maps hooks to directions in one place (`dataplane`).

use core::{fmt, str::FromStr};

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "user",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Direction {
    /// Towards the instance (the file's `[[security_group.ingress]]`).
    Ingress = 0,
    /// From the instance (`[[security_group.egress]]`).
    Egress = 1,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// Index of the direction's table, and its value in map entries.
    #[inline(always)]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The direction a map entry stores (0 ingress, anything else egress).
    #[inline(always)]
    pub const fn from_raw(raw: u32) -> Direction {
        if raw == 0 {
            Direction::Ingress
        } else {
            Direction::Egress
        }
    }

    /// The other direction: that of a reply.
    #[inline(always)]
    pub const fn reverse(self) -> Direction {
        match self {
            Direction::Ingress => Direction::Egress,
            Direction::Egress => Direction::Ingress,
        }
    }

    /// The name the file, the API and the metrics use.
    pub const fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses `ingress` or `egress` (any letter case).
impl FromStr for Direction {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Direction, Self::Err> {
        if s.eq_ignore_ascii_case("ingress") {
            Ok(Direction::Ingress)
        } else if s.eq_ignore_ascii_case("egress") {
            Ok(Direction::Egress)
        } else {
            Err("a direction: \"ingress\" or \"egress\"")
        }
    }
}
