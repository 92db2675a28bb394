//! Test harness for sg: network namespaces joined by veths (or by TUN
//! devices: L3 links, without a link header), a connection tester that
//! probes them, and a runner for the daemon.
//!
//! Everything needs root (`ip netns`, `setns`, mounting a bpffs) and
//! iproute2 and iputils-ping. Nothing is ever done in the host's own network
//! namespace: every interface, address, socket and daemon lives in a
//! namespace named `sgt-<pid>-<counter>-<label>` that is deleted when its
//! value is dropped, also when a test panics.
//!
//! A test is a topology, servers, `sgd` on a config, and a table of probes:
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use sg_tests::*;
//! let t = Topology::pair("ssh")?;
//! let (s, c) = (t.server(), t.client());
//! let _srv = tcp_servers(s, &[s.v4(22)]);
//! let ssh = Group::new("sg-ssh").rules([accept_in("tcp", "22/22", "192.0.2.0/24")]);
//! let _sgd = enforce(s, &[ssh]); // bound to the server's interface, sg0
//! check(&[
//!     probe("ssh from the segment", Tcp(22), c, s.ipv4(), PASS),
//!     probe("ping, no rule", Ping, c, s.ipv4(), DROPPED),
//! ]);
//! # Ok(()) }
//! ```

mod attach;
mod config;
mod conn;
mod crafted;
mod daemon;
mod etcd;
pub mod frames;
mod netns;
mod probe;
mod push;
mod tun;
mod udp;
pub mod wire;

pub use attach::{Attach, TcState};
pub use config::{
    Group, Interface, Rule, accept_in, accept_out, drop_in, drop_out, groups_on, interface,
    port_list, prefix_list, snapshot_policy,
};
pub use conn::{
    DEFAULT_TIMEOUT, Outcome, TcpConn, TcpServer, assert_ping, assert_tcp_allowed,
    assert_tcp_blocked, assert_udp, ping, tcp_connect, tcp_connect_from, tcp_echo, tcp_servers,
};
pub use crafted::{send_frame, udp6_echo_options_after_fragment};
pub use daemon::{
    Ctl, CtlOut, Daemon, DaemonDirs, READY_TIMEOUT, STOP_TIMEOUT, Sgd, enforce,
    layout_test_sgd_path, metrics, open_to_all, sgctl_path, sgd_check, sgd_path,
};
pub use etcd::{Etcd, MGMT_PREFIX_LEN, Mgmt, etcd_ip};
pub use netns::{CLIENT_IF, Host, Hypervisor, NarrowPath, Netns, SERVER_IF, Topology, veth_pair};
pub use probe::{
    DROPPED, Expect, PASS, Ping, Probe, Source, Tcp, TcpEcho, Traffic, Udp, UdpBytes,
    UdpFragmentsOptionsAfter, UdpToClosed, UdpToClosedDestOpts, check, probe,
};
pub use push::{PushClient, Pusher};
pub use tun::{Tun, TunPair};
pub use udp::{
    Datagrams, UdpServer, UdpSink, udp_echo_len, udp_flood, udp_refused, udp_request, udp_send,
    udp_servers,
};
