//! A stand-in for sgd that speaks only its process protocol, so that the
//! harness's own tests can check `Sgd` without the real daemon: it sends
//! `READY=1` once started, `RELOADING=1` and `READY=1` on SIGHUP, and exits
//! on SIGTERM. A config file containing `exit_before_ready` makes it fail at
//! start instead, the way sgd fails on a bad file.

use std::os::unix::net::UnixDatagram;
use std::process::ExitCode;

use nix::sys::signal::{SigSet, Signal};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, flag, config] = args.as_slice() else {
        eprintln!("usage: fake-sgd --config FILE");
        return ExitCode::from(2);
    };
    if flag != "--config" {
        eprintln!("fake-sgd: unknown option {flag}");
        return ExitCode::from(2);
    }
    let text = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("fake-sgd: {config}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if text.contains("exit_before_ready") {
        eprintln!("fake-sgd: {config}: told to exit before ready");
        return ExitCode::FAILURE;
    }

    // Blocked before anything can arrive, then taken synchronously.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGHUP);
    signals.add(Signal::SIGTERM);
    signals.thread_block().expect("block signals");

    println!("fake-sgd: started with {config}");
    notify("READY=1");
    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => {
                notify("RELOADING=1");
                println!("fake-sgd: reloaded");
                notify("READY=1");
            }
            _ => {
                println!("fake-sgd: stopping");
                return ExitCode::SUCCESS;
            }
        }
    }
}

/// Sends one message to `$NOTIFY_SOCKET`, if set.
fn notify(message: &str) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        let socket = UnixDatagram::unbound().expect("create a datagram socket");
        socket
            .send_to(message.as_bytes(), path)
            .expect("send to NOTIFY_SOCKET");
    }
}
