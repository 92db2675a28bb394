//! TUN devices: L3 interfaces without a link header, as WireGuard and IP
//! tunnels have, made with `/dev/net/tun` (this kernel has no tunnel
//! modules). A [`Tun`] lives as long as its file descriptor; a [`TunPair`]
//! joins a server and a client namespace by one TUN device each and a
//! thread that carries every packet from one to the other, so the usual
//! probes run across an L3 link.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::netns::{CLIENT_IF, Host, Netns, SERVER_IF};

/// `struct ifreq` as TUNSETIFF reads it: the name and the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A TUN device (`IFF_TUN | IFF_NO_PI`: whole IP packets, no header in
/// front). The device exists while this value does.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Creates TUN device `name` in `ns` (down, no addresses).
    pub fn open(ns: &Netns, name: &str) -> Result<Tun> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            bail!(
                "interface name {name:?} must have 1..{} characters",
                libc::IFNAMSIZ
            );
        }
        // The device goes to the namespace of the thread that opens it.
        let file = ns
            .run_in(|| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/net/tun")
            })
            .context("open /dev/net/tun")?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
            return Err(std::io::Error::last_os_error()).context(format!("TUNSETIFF {name}"));
        }
        Ok(Tun {
            file,
            name: name.to_owned(),
        })
    }

    /// Gives the device (still down) another link type (`ARPHRD_*`): how
    /// a test makes an interface of a type sg does not parse.
    pub fn set_link_type(&self, hatype: u16) -> Result<()> {
        // SAFETY: TUNSETLINK takes its argument by value.
        if unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETLINK,
                hatype as libc::c_ulong,
            )
        } < 0
        {
            return Err(std::io::Error::last_os_error())
                .context(format!("TUNSETLINK {} {hatype}", self.name));
        }
        Ok(())
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A server and a client, each with a TUN device ([`SERVER_IF`],
/// [`CLIENT_IF`]) and the addresses of a [`crate::Topology::pair`]
/// (192.0.2.1/24 and 2001:db8::1/64, the client .2 and ::2), joined by a
/// forwarder thread: what one side sends, the other receives.
#[derive(Debug)]
pub struct TunPair {
    server: Host,
    client: Host,
    stop: Arc<AtomicBool>,
    forwarder: Option<JoinHandle<()>>,
}

impl TunPair {
    pub fn new(label: &str) -> Result<TunPair> {
        let server = Host::new(&format!("{label}-s"), SERVER_IF, 1)?;
        let client = Host::new(&format!("{label}-c"), CLIENT_IF, 2)?;
        let mut tuns = Vec::new();
        for host in [&server, &client] {
            let tun = Tun::open(host, host.ifname())?;
            for cidr in host.cidrs() {
                let mut args = vec!["addr", "add", &cidr, "dev", host.ifname()];
                if cidr.contains(':') {
                    args.push("nodad");
                }
                host.ip(&args)?;
            }
            host.ip(&["link", "set", host.ifname(), "up"])?;
            tuns.push(tun.file);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let [a, b]: [File; 2] = tuns.try_into().expect("two devices");
        let forwarder = {
            let stop = stop.clone();
            thread::spawn(move || forward(a, b, &stop))
        };
        for host in [&server, &client] {
            wait_carrier(host, host.ifname())?;
        }
        Ok(TunPair {
            server,
            client,
            stop,
            forwarder: Some(forwarder),
        })
    }

    /// The server host.
    pub fn server(&self) -> &Host {
        &self.server
    }

    /// The client host.
    pub fn client(&self) -> &Host {
        &self.client
    }
}

impl Drop for TunPair {
    /// Stops the forwarder, which closes both devices (so they go before
    /// their namespaces).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(forwarder) = self.forwarder.take() {
            let _ = forwarder.join();
        }
    }
}

/// Waits until `ifname` in `ns` is up with a carrier (`LOWER_UP`; a TUN
/// device's operational state stays "unknown").
fn wait_carrier(ns: &Netns, ifname: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = ns.ip(&["-o", "link", "show", "dev", ifname])?;
        if out.contains("LOWER_UP") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{ifname} in netns {} has no carrier: {out}", ns.name());
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// How long the forwarder waits for a packet before it looks at `stop`.
const POLL_MS: libc::c_int = 50;

/// Carries packets between the devices `a` and `b` until `stop`.
fn forward(mut a: File, mut b: File, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [a.as_raw_fd(), b.as_raw_fd()].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: `fds` is an array of two initialised pollfd.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, POLL_MS) } <= 0 {
            continue;
        }
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents & libc::POLLIN == 0 {
                continue;
            }
            let (from, to) = if i == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            // One read is one packet; a failed write loses it, as a link may.
            if let Ok(n) = from.read(&mut buf) {
                let _ = to.write(&buf[..n]);
            }
        }
    }
}
