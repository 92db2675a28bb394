//! What decided a packet: the reason the kernel counts (index of the
//! per-CPU `SG_STATS` counters), records with each drop and leaves in
//! `skb->cb`, with the names the metrics and `sgctl` show.

/// What decided a packet; index into the per-CPU `SG_STATS` counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    NotIp = 0,
    Session = 1,
    RuleAccept = 2,
    RuleDrop = 3,
    DefaultAccept = 4,
    DefaultDrop = 5,
    Metadata = 6,
    Pmtud = 7,
    NeighborDiscovery = 8,
    Dhcp = 9,
    SmtpBlocked = 10,
    Malformed = 11,
    Unbound = 12,
    /// An ICMP error quoting a tracked session (SPEC §3.5).
    Related = 13,
    /// A session that a new explicit drop rule matches (SPEC §3.6).
    SessionEnded = 14,
    /// A hypervisor-mode instance sending from an address not its own.
    Spoofed = 15,
    /// A non-first fragment whose first fragment was accepted.
    FragmentAccept = 16,
    /// A non-first fragment whose first fragment was dropped, or unknown
    /// inbound.
    FragmentDrop = 17,
    /// A frame that is not IP (nor ARP) while `builtin_non_ip` is off.
    NotIpDropped = 18,
}
pub const REASON_COUNT: u32 = 19;

impl Reason {
    pub const ALL: [Reason; REASON_COUNT as usize] = [
        Reason::NotIp,
        Reason::Session,
        Reason::RuleAccept,
        Reason::RuleDrop,
        Reason::DefaultAccept,
        Reason::DefaultDrop,
        Reason::Metadata,
        Reason::Pmtud,
        Reason::NeighborDiscovery,
        Reason::Dhcp,
        Reason::SmtpBlocked,
        Reason::Malformed,
        Reason::Unbound,
        Reason::Related,
        Reason::SessionEnded,
        Reason::Spoofed,
        Reason::FragmentAccept,
        Reason::FragmentDrop,
        Reason::NotIpDropped,
    ];

    pub fn from_u32(v: u32) -> Option<Reason> {
        Reason::ALL.get(v as usize).copied()
    }

    pub fn accepts(self) -> bool {
        !matches!(
            self,
            Reason::RuleDrop
                | Reason::DefaultDrop
                | Reason::SmtpBlocked
                | Reason::Malformed
                | Reason::SessionEnded
                | Reason::Spoofed
                | Reason::FragmentDrop
                | Reason::NotIpDropped
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Reason::NotIp => "not-ip",
            Reason::Session => "session",
            Reason::RuleAccept => "rule-accept",
            Reason::RuleDrop => "rule-drop",
            Reason::DefaultAccept => "default-accept",
            Reason::DefaultDrop => "default-drop",
            Reason::Metadata => "builtin-metadata",
            Reason::Pmtud => "builtin-pmtud",
            Reason::NeighborDiscovery => "builtin-neighbor-discovery",
            Reason::Dhcp => "builtin-dhcp",
            Reason::SmtpBlocked => "builtin-smtp-blocked",
            Reason::Malformed => "malformed",
            Reason::Unbound => "unbound",
            Reason::Related => "related-icmp",
            Reason::SessionEnded => "session-ended-by-drop-rule",
            Reason::Spoofed => "spoofed-source",
            Reason::FragmentAccept => "fragment-accept",
            Reason::FragmentDrop => "fragment-drop",
            Reason::NotIpDropped => "not-ip-dropped",
        }
    }
}
