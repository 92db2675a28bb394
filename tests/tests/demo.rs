//! The README's run command: the demo shows the web-server group at work
//! and leaves nothing behind.

use std::process::Command;

#[test]
fn demo_shows_what_passes_and_what_is_dropped_then_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_sg-demo"))
        .args(["--rounds", "2"])
        .output()
        .expect("run sg-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let round2 = stdout.split("-- round 2").nth(1).expect("two rounds ran");
    for (mark, probe) in [
        ("PASS   ", "client -> server tcp/80   192.0.2.1:80"),
        ("PASS   ", "client -> server tcp/443"),
        ("PASS   ", "client -> server tcp/80   [2001:db8::1]:80"),
        ("DROPPED", "client -> server tcp/22"),
        ("DROPPED", "client -> server ping"),
        ("PASS   ", "server -> client tcp/8080"),
    ] {
        assert!(
            round2.contains(&format!("{mark} {probe}")),
            "{mark} {probe} missing in:\n{stdout}"
        );
    }
    assert!(stdout.ends_with("Done.\n"), "{stdout}");
}
