//! `sgctl group export`: writes the group the daemon answered with
//! (ECS's shape, [`sg_daemon::ecs`]) into a file of the caller's — sgctl
//! writes it, so the daemon never writes into the caller's directory — and
//! prints its path.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use sg_daemon::ecs::{self, SecurityGroupAttribute};

use crate::cli::{Command, ExportFormat, GroupCmd, Output};

/// The format and directory of an export command.
pub(crate) fn target(command: &Command) -> Option<(ExportFormat, PathBuf)> {
    match command {
        Command::Group(GroupCmd::Export { format, dir, .. }) => Some((
            *format,
            dir.clone()
                .or_else(|| std::env::current_dir().ok())
                .unwrap_or_else(|| PathBuf::from(".")),
        )),
        _ => None,
    }
}

pub(crate) fn write(
    group: &SecurityGroupAttribute,
    format: ExportFormat,
    dir: &Path,
    output: Output,
) -> ExitCode {
    let (name, text) = match format {
        ExportFormat::Json => (
            ecs::json_file_name(&group.region_id, &group.security_group_id),
            group.to_json(),
        ),
        ExportFormat::Csv => (
            ecs::csv_file_name(&group.security_group_id, &group.region_id, &local_date()),
            group.to_csv(),
        ),
    };
    let path = dir.join(name);
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("sgctl: cannot write {}: {e}", path.display());
        return ExitCode::from(1);
    }
    match output {
        Output::Table => println!("{}", path.display()),
        Output::Json => println!(
            "{}",
            serde_json::json!({ "path": path, "rules": group.permissions.permission.len() })
        ),
    }
    ExitCode::SUCCESS
}

/// Today's date on this host, `YYYY-MM-DD` (local time, as the console's
/// file names have it).
fn local_date() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which outlives the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return "1970-01-01".into();
    }
    format!(
        "{:04}-{:02}-{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday
    )
}
