//! Attaching many interfaces at once, fast. Each TCX attach to an
//! interface that had no TCX program yet waits for an RCU grace period
//! (the kernel synchronises before it frees the program array it
//! replaced), holding the network lock: about 12 ms each here, so 1000
//! interfaces × 2 hooks took 25 s of a 27 s first apply, and threads do
//! not help. While such a batch runs, sgd asks the kernel for expedited
//! grace periods (`/sys/kernel/rcu_expedited`: the same 1000 interfaces
//! then attach in about a second) and puts the setting back when the
//! batch ends. Expedited grace periods cost the other CPUs an
//! interrupt each, so this is kept to the batch.
//!
//! A marker file in `runtime_dir` says sgd changed the setting; a daemon
//! killed during a batch leaves it, and the next one puts the setting
//! back at start ([`restore_after_crash`]).

use std::{
    fs,
    path::{Path, PathBuf},
};

use tracing::{info, warn};

/// The kernel's switch.
pub const KNOB: &str = "/sys/kernel/rcu_expedited";
/// The marker's name in `runtime_dir`.
pub const MARKER: &str = "rcu-expedited-by-sgd";
/// New attaches from which a batch is expedited.
pub const FROM_ATTACHES: usize = 16;

/// Expedited grace periods for as long as it lives.
pub struct ExpeditedRcu {
    knob: PathBuf,
    marker: PathBuf,
}

impl ExpeditedRcu {
    /// Switches expedited grace periods on if they are off (`None` if
    /// they are on already, or cannot be switched: the batch is then only
    /// slower).
    pub fn begin(runtime_dir: &Path) -> Option<ExpeditedRcu> {
        let _ = fs::create_dir_all(runtime_dir);
        Self::begin_at(Path::new(KNOB), &runtime_dir.join(MARKER))
    }

    fn begin_at(knob: &Path, marker: &Path) -> Option<ExpeditedRcu> {
        if fs::read_to_string(knob).ok()?.trim() != "0" {
            return None;
        }
        // The marker first: a crash after the switch must find it.
        if let Err(e) = fs::write(marker, b"sgd set rcu_expedited to 1 (it was 0)\n") {
            warn!(
                "not expediting the attaches: writing {}: {e}",
                marker.display()
            );
            return None;
        }
        if let Err(e) = fs::write(knob, b"1") {
            warn!(
                "not expediting the attaches: writing {}: {e}",
                knob.display()
            );
            let _ = fs::remove_file(marker);
            return None;
        }
        info!("expedited RCU grace periods while attaching many interfaces");
        Some(ExpeditedRcu {
            knob: knob.to_owned(),
            marker: marker.to_owned(),
        })
    }
}

impl Drop for ExpeditedRcu {
    fn drop(&mut self) {
        put_back(&self.knob, &self.marker);
    }
}

fn put_back(knob: &Path, marker: &Path) {
    match fs::write(knob, b"0") {
        Ok(()) => {
            let _ = fs::remove_file(marker);
        }
        Err(e) => warn!(
            "putting {} back to 0: {e} (sgd set it to 1 for a batch of attaches)",
            knob.display()
        ),
    }
}

/// At start: puts back the setting a daemon killed during a batch left.
pub fn restore_after_crash(runtime_dir: &Path) {
    let marker = runtime_dir.join(MARKER);
    if marker.exists() {
        info!("putting {KNOB} back to 0: a previous sgd set it during a batch of attaches");
        put_back(Path::new(KNOB), &marker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expedited_only_for_the_batch_and_put_back_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let (knob, marker) = (dir.path().join("knob"), dir.path().join(MARKER));
        let read = || fs::read_to_string(&knob).unwrap();

        fs::write(&knob, "0\n").unwrap();
        let batch = ExpeditedRcu::begin_at(&knob, &marker).expect("switched on");
        assert_eq!(read(), "1");
        assert!(marker.exists());
        drop(batch);
        assert_eq!(read(), "0");
        assert!(!marker.exists());

        // Already on (the operator's choice): left alone.
        fs::write(&knob, "1\n").unwrap();
        assert!(ExpeditedRcu::begin_at(&knob, &marker).is_none());
        assert_eq!(read(), "1\n");

        // A daemon killed during a batch: the marker says so.
        fs::write(&knob, "0\n").unwrap();
        std::mem::forget(ExpeditedRcu::begin_at(&knob, &marker).unwrap());
        assert_eq!(read(), "1");
        put_back(&knob, &marker);
        assert_eq!(read(), "0");
        assert!(!marker.exists());
    }
}
