//! Test harness for sg: network namespaces joined by veths, a connection
//! tester that probes them, and a runner for the daemon.
//!
//! Everything needs root (`ip netns`, `setns`, mounting a bpffs) and
//! iproute2 and iputils-ping. Nothing is ever done in the host's own network
//! namespace: every interface, address, socket and daemon lives in a
//! namespace named `sgt-<pid>-<counter>-<label>` that is deleted when its
//! value is dropped, also when a test panics.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use sg_tests::*;
//! let t = Topology::pair("ssh")?;
//! let dirs = DaemonDirs::new()?;
//! let _srv = TcpServer::start(t.server(), t.server().v4(22))?;
//! let _sgd = Sgd::start(t.server(), &dirs.config(r#"
//! [[security_group]]
//! id = "sg-ssh"
//!   [[security_group.ingress]]
//!   policy = "accept"
//!   ip_protocol = "tcp"
//!   port_range = "22/22"
//!   source_cidr_ip = "192.0.2.0/24"
//!
//! [[interface]]
//! name = "sg0"
//! security_groups = ["sg-ssh"]
//! "#))?;
//! assert_tcp_allowed(t.client(), t.server().v4(22));
//! assert_ping(t.client(), t.server().ipv4().into(), false);
//! # Ok(()) }
//! ```

mod conn;
mod daemon;
pub mod frames;
mod netns;

pub use conn::{
    DEFAULT_TIMEOUT, Datagrams, Outcome, TcpConn, TcpServer, UdpServer, UdpSink, assert_ping,
    assert_tcp_allowed, assert_tcp_blocked, assert_udp, ping, tcp_connect, tcp_connect_from,
    tcp_echo, udp_request, udp_send,
};
pub use daemon::{DaemonDirs, READY_TIMEOUT, STOP_TIMEOUT, Sgd, sgd_check, sgd_path};
pub use netns::{CLIENT_IF, Host, Netns, SERVER_IF, Topology, veth_pair};
