//! `cargo xtask install [--prefix DIR] [--destdir DIR]`: builds `sgd` (and
//! `sgctl`, once the workspace has it) in release mode and installs them with
//! the systemd unit and, if there is none yet, an example config:
//!
//! ```text
//! DESTDIR/PREFIX/bin/sgd                  always replaced
//! DESTDIR/PREFIX/bin/sgctl                when the workspace builds it
//! DESTDIR/etc/systemd/system/sgd.service  always replaced; ExecStart=PREFIX/bin/sgd
//! DESTDIR/etc/sg/sg.toml                  only if absent: never overwrites an operator's file
//! ```
//!
//! Without `--destdir` (a real install, as root) it then runs
//! `systemctl daemon-reload` and says how to enable the service. With it,
//! nothing outside DESTDIR is touched (for packaging and for trying it out).
//! Running it twice changes nothing the second time.

use crate::util::{self, cargo, output, run};
use anyhow::{Context as _, Result, bail};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The unit and the example config, relative to the workspace root.
const UNIT_SOURCE: &str = "packaging/systemd/sgd.service";
const CONFIG_SOURCE: &str = "packaging/sg.toml";
/// Where the unit and the config go (under DESTDIR), whatever the prefix.
const UNIT_DEST: &str = "etc/systemd/system/sgd.service";
const CONFIG_DEST: &str = "etc/sg/sg.toml";
/// The `ExecStart=` binary in [`UNIT_SOURCE`], replaced by `PREFIX/bin/sgd`.
const UNIT_EXEC: &str = "/usr/local/bin/sgd";

pub fn install(prefix: &Path, destdir: Option<&Path>) -> Result<()> {
    check_prefix(prefix)?;
    let destdir = match destdir {
        Some(d) if !d.as_os_str().is_empty() => {
            Some(std::path::absolute(d).with_context(|| format!("destdir {}", d.display()))?)
        }
        _ => None,
    };
    if destdir.is_none() {
        util::require_root("`cargo xtask install` without --destdir (a real install)")?;
    }

    let built = build()?;
    let root = util::workspace_root();
    let unit_template = fs::read_to_string(root.join(UNIT_SOURCE))
        .with_context(|| format!("reading {UNIT_SOURCE}"))?;
    let example_config = fs::read_to_string(root.join(CONFIG_SOURCE))
        .with_context(|| format!("reading {CONFIG_SOURCE}"))?;
    let files = Files {
        sgd: &built.sgd,
        sgctl: built.sgctl.as_deref(),
        unit: &render_unit(&unit_template, prefix)?,
        config: &example_config,
    };
    let dest = destdir.as_deref().unwrap_or(Path::new("/"));
    let report = install_files(&files, prefix, dest)?;
    if destdir.is_none() {
        systemd_reload()?;
    }
    // The config in place (an operator's, kept, or the example) must pass
    // the new sgd's check, or the next (re)start would fail.
    check_config(&built.sgd, &report.config)?;

    if destdir.is_some() {
        eprintln!(
            "install: done; nothing outside {} was touched (no systemctl)",
            dest.display()
        );
    } else {
        next_steps(report.config_created);
    }
    Ok(())
}

/// Rejects prefixes that would not survive as a path in `ExecStart=`
/// (systemd splits on whitespace and expands `%` and `$`) or that would
/// escape DESTDIR.
fn check_prefix(prefix: &Path) -> Result<()> {
    let Some(text) = prefix.to_str() else {
        bail!("--prefix {} is not UTF-8", prefix.display());
    };
    if !prefix.is_absolute() {
        bail!("--prefix {text}: must be an absolute path");
    }
    if prefix.components().any(|c| c == Component::ParentDir) {
        bail!("--prefix {text}: must not contain `..`");
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "%$\\\"'".contains(*c))
    {
        bail!("--prefix {text}: {c:?} cannot appear in a systemd ExecStart= path");
    }
    Ok(())
}

struct Built {
    sgd: PathBuf,
    sgctl: Option<PathBuf>,
}

/// `cargo build --release` of the packages that provide `sgd` and `sgctl`.
///
/// Which package has which binary comes from `cargo metadata`, so `sgctl`
/// is built and installed as soon as some workspace package defines it, and
/// a stale `target/release/sgctl` from another checkout is never installed.
fn build() -> Result<Built> {
    let meta = metadata()?;
    let is_bin = |target: &serde_json::Value, name: &str| {
        target["name"] == name
            && target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"))
    };
    let bin_package = |name: &str| -> Option<String> {
        meta["packages"]
            .as_array()?
            .iter()
            .find(|p| {
                p["targets"]
                    .as_array()
                    .is_some_and(|ts| ts.iter().any(|t| is_bin(t, name)))
            })
            .and_then(|p| p["name"].as_str())
            .map(str::to_owned)
    };
    let sgd_pkg = bin_package("sgd").context("no workspace package has an `sgd` binary")?;
    let sgctl_pkg = bin_package("sgctl");

    let mut cmd = cargo();
    cmd.args(["build", "--release", "-p", &sgd_pkg, "--bin", "sgd"]);
    if let Some(pkg) = &sgctl_pkg {
        if *pkg != sgd_pkg {
            cmd.args(["-p", pkg]);
        }
        cmd.args(["--bin", "sgctl"]);
    }
    run(&mut cmd)?;

    let release = PathBuf::from(
        meta["target_directory"]
            .as_str()
            .context("`cargo metadata` has no target_directory")?,
    )
    .join("release");
    let sgd = release.join("sgd");
    if !sgd.is_file() {
        bail!("the build succeeded but there is no {}", sgd.display());
    }
    let sgctl = match sgctl_pkg {
        Some(_) => Some(release.join("sgctl")),
        None => {
            eprintln!("install: sgctl: no workspace package builds it yet; not installed");
            None
        }
    };
    Ok(Built { sgd, sgctl })
}

fn metadata() -> Result<serde_json::Value> {
    let out = output(cargo().args(["metadata", "--format-version", "1", "--no-deps"]))?;
    if !out.status.success() {
        bail!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing `cargo metadata` output")
}

/// The unit with its `ExecStart=` pointing at `PREFIX/bin/sgd`.
fn render_unit(template: &str, prefix: &Path) -> Result<String> {
    let bin = prefix.join("bin/sgd");
    let mut found = 0;
    let mut unit = String::with_capacity(template.len());
    for line in template.split_inclusive('\n') {
        match line.strip_prefix("ExecStart=") {
            Some(rest) => {
                let Some(args) = rest.strip_prefix(UNIT_EXEC) else {
                    bail!("{UNIT_SOURCE}: ExecStart= does not start with {UNIT_EXEC}: {line}");
                };
                found += 1;
                unit.push_str(&format!("ExecStart={}{args}", bin.display()));
            }
            None => unit.push_str(line),
        }
    }
    if found != 1 {
        bail!("{UNIT_SOURCE}: expected one ExecStart= line, found {found}");
    }
    Ok(unit)
}

/// What to install: the built binaries and the rendered texts.
struct Files<'a> {
    sgd: &'a Path,
    sgctl: Option<&'a Path>,
    unit: &'a str,
    config: &'a str,
}

struct Report {
    /// The config file in place afterwards (DESTDIR included).
    config: PathBuf,
    /// Whether it is the example, installed just now.
    config_created: bool,
}

/// Puts `files` in place under `dest` (DESTDIR, or `/`): the filesystem half
/// of [`install`], no building and no systemctl.
fn install_files(files: &Files, prefix: &Path, dest: &Path) -> Result<Report> {
    let bin_dir = under(dest, &prefix.join("bin"));
    install_binary(files.sgd, &bin_dir.join("sgd"))?;
    if let Some(sgctl) = files.sgctl {
        install_binary(sgctl, &bin_dir.join("sgctl"))?;
    }
    install_text(files.unit, &dest.join(UNIT_DEST), 0o644)?;

    let config = dest.join(CONFIG_DEST);
    let config_created = if config.symlink_metadata().is_ok() {
        eprintln!(
            "install: {}: exists, left as it is (the example is {CONFIG_SOURCE})",
            config.display()
        );
        false
    } else {
        create_dirs(config.parent().expect("has a parent"))?;
        write_new(&config, files.config.as_bytes(), 0o644)?;
        eprintln!("install: {}: example config installed", config.display());
        true
    };
    Ok(Report {
        config,
        config_created,
    })
}

/// `path` (absolute) inside `dest`: `Path::join` would drop `dest` for an
/// absolute path.
fn under(dest: &Path, path: &Path) -> PathBuf {
    dest.join(path.strip_prefix("/").unwrap_or(path))
}

fn create_dirs(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Copies `src` to `dst` (mode 0755) unless it is already identical. Goes
/// through a temporary file and a rename: a running `sgd` keeps its old
/// binary, where writing over it would fail with ETXTBSY.
fn install_binary(src: &Path, dst: &Path) -> Result<()> {
    let bytes = fs::read(src).with_context(|| format!("reading {}", src.display()))?;
    install_bytes(&bytes, dst, 0o755)
}

fn install_text(text: &str, dst: &Path, mode: u32) -> Result<()> {
    install_bytes(text.as_bytes(), dst, mode)
}

fn install_bytes(bytes: &[u8], dst: &Path, mode: u32) -> Result<()> {
    let same = fs::read(dst).is_ok_and(|old| old == bytes)
        && fs::metadata(dst).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
    if same {
        eprintln!("install: {}: unchanged", dst.display());
        return Ok(());
    }
    let dir = dst.parent().expect("an absolute file path has a parent");
    create_dirs(dir)?;
    let name = dst.file_name().expect("a file name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.xtask-install.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = write_new(&tmp, bytes, mode).and_then(|()| {
        fs::rename(&tmp, dst).with_context(|| format!("replacing {}", dst.display()))
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    eprintln!("install: {}: installed", dst.display());
    Ok(())
}

/// Creates `path`, which must not exist, with `mode` (not subject to the
/// umask), and syncs it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// `sgd --config FILE --check` with the freshly built binary: validates and
/// touches nothing. A failure is an error, since `systemctl (re)start sgd`
/// would then fail too; the files are installed all the same.
fn check_config(sgd: &Path, config: &Path) -> Result<()> {
    let out = output(Command::new(sgd).arg("--config").arg(config).arg("--check"))?;
    if !out.status.success() {
        bail!(
            "{} does not pass `sgd --check`; fix it before (re)starting sgd:\n{}{}",
            config.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprint!("install: {}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

/// A real install: makes systemd read the new unit.
fn systemd_reload() -> Result<()> {
    if Path::new("/run/systemd/system").is_dir() {
        run(Command::new("systemctl").arg("daemon-reload"))
    } else {
        eprintln!(
            "install: systemd is not running on this machine (no /run/systemd/system); \
             skipped `systemctl daemon-reload`"
        );
        Ok(())
    }
}

/// A real install: says what is left to do.
fn next_steps(config_created: bool) {
    if config_created {
        eprintln!(
            "install: edit /{CONFIG_DEST} before starting sgd: the example binds eth0 and \
             admits SSH only from documentation addresses"
        );
    }
    let active = Path::new("/run/systemd/system").is_dir()
        && output(Command::new("systemctl").args(["is-active", "--quiet", "sgd"]))
            .is_ok_and(|o| o.status.success());
    if active {
        eprintln!("install: sgd is running; `systemctl restart sgd` runs the new binary");
    } else {
        eprintln!("install: to start sgd now and at every boot: systemctl enable --now sgd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../../packaging/systemd/sgd.service");

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> TempDir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "xtask-install-{label}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn exec_start(unit: &str) -> Vec<&str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix("ExecStart="))
            .collect()
    }

    #[test]
    fn unit_points_at_the_prefix() {
        let unit = render_unit(TEMPLATE, Path::new("/opt/sg")).unwrap();
        assert_eq!(
            exec_start(&unit),
            ["/opt/sg/bin/sgd --config /etc/sg/sg.toml"]
        );
        // Only that line changes.
        let default = render_unit(TEMPLATE, Path::new("/usr/local")).unwrap();
        assert_eq!(default, TEMPLATE);
    }

    #[test]
    fn unit_without_the_expected_exec_start_is_refused() {
        assert!(render_unit("[Service]\nExecStart=/bin/true\n", Path::new("/usr")).is_err());
        assert!(render_unit("[Service]\n", Path::new("/usr")).is_err());
    }

    #[test]
    fn prefixes_systemd_cannot_take_are_refused() {
        assert!(check_prefix(Path::new("/usr/local")).is_ok());
        assert!(check_prefix(Path::new("/opt/sg-1.0")).is_ok());
        for bad in [
            "usr/local",
            "/opt/my sg",
            "/opt/%n",
            "/opt/$X",
            "/opt/../etc",
        ] {
            assert!(check_prefix(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn installs_into_destdir_idempotently_and_keeps_the_config() {
        let tmp = TempDir::new("destdir");
        let src = tmp.0.join("src");
        fs::create_dir(&src).unwrap();
        let (sgd, sgctl) = (src.join("sgd"), src.join("sgctl"));
        fs::write(&sgd, b"sgd v1").unwrap();
        fs::write(&sgctl, b"sgctl v1").unwrap();
        let dest = tmp.0.join("dest");
        let unit = render_unit(TEMPLATE, Path::new("/usr/local")).unwrap();
        let files = Files {
            sgd: &sgd,
            sgctl: Some(&sgctl),
            unit: &unit,
            config: "# example\n",
        };
        let prefix = Path::new("/usr/local");

        let report = install_files(&files, prefix, &dest).unwrap();
        assert!(report.config_created);
        assert_eq!(report.config, dest.join("etc/sg/sg.toml"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let bin = dest.join("usr/local/bin");
        assert_eq!(fs::read(bin.join("sgd")).unwrap(), b"sgd v1");
        assert_eq!(fs::read(bin.join("sgctl")).unwrap(), b"sgctl v1");
        assert_eq!(mode(&bin.join("sgd")), 0o755);
        let unit_path = dest.join("etc/systemd/system/sgd.service");
        assert_eq!(fs::read_to_string(&unit_path).unwrap(), unit);
        assert_eq!(mode(&unit_path), 0o644);
        assert_eq!(
            fs::read_to_string(dest.join("etc/sg/sg.toml")).unwrap(),
            "# example\n"
        );

        // The operator edits the config; a new sgd is installed.
        fs::write(dest.join("etc/sg/sg.toml"), "# mine\n").unwrap();
        fs::write(&sgd, b"sgd v2").unwrap();
        let report = install_files(&files, prefix, &dest).unwrap();
        assert!(!report.config_created);
        assert_eq!(fs::read(bin.join("sgd")).unwrap(), b"sgd v2");
        assert_eq!(
            fs::read_to_string(dest.join("etc/sg/sg.toml")).unwrap(),
            "# mine\n"
        );

        // Nothing left behind: exactly the installed files.
        let mut all = Vec::new();
        let mut stack = vec![dest.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    all.push(path.strip_prefix(&dest).unwrap().to_owned());
                }
            }
        }
        all.sort();
        let expected: Vec<PathBuf> = [
            "etc/sg/sg.toml",
            "etc/systemd/system/sgd.service",
            "usr/local/bin/sgctl",
            "usr/local/bin/sgd",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn a_prefix_stays_inside_destdir() {
        assert_eq!(
            under(Path::new("/tmp/d"), Path::new("/opt/sg/bin")),
            Path::new("/tmp/d/opt/sg/bin")
        );
        assert_eq!(
            under(Path::new("/"), Path::new("/usr/local/bin")),
            Path::new("/usr/local/bin")
        );
    }
}
