//! Asking before what cannot be undone (deleting a group, restoring a
//! snapshot): a `y` on a terminal, `--yes` anywhere else.

use std::process::ExitCode;

use super::EXIT_REFUSED;

/// Asks before what cannot be undone: on a terminal, a `y` goes on;
/// anywhere else (a script) `--yes` is required. `None`: go on; else the
/// exit code.
pub(crate) fn ask(question: &str, action: &str, declined: &str) -> Option<ExitCode> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    if !std::io::stdin().is_terminal() {
        eprintln!("sgctl: {action} needs confirmation: add --yes (stdin is not a terminal)");
        return Some(ExitCode::from(2));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        return None;
    }
    eprintln!("sgctl: {declined}");
    Some(ExitCode::from(EXIT_REFUSED))
}
