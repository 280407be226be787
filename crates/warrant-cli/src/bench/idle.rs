//! How this machine's idle CPUs wait for work, read from Linux's sysfs and reported with
//! the figures.
//!
//! At concurrency 1 every answer crosses several threads that sleep in between (the
//! connection's worker, the storage writer, the disk's sync). On a virtual machine a CPU
//! with nothing to run halts, and waking a thread on a halted CPU is an exit to the
//! hypervisor; Linux's guest halt polling (the `haltpoll` cpuidle governor, on a KVM
//! guest) first polls for up to `guest_halt_poll_ns` before halting, which turns most of
//! those wake-ups into a memory write. The setting is the machine's, not Warrant's, and it moves the
//! low-concurrency latencies of every server measured (the baseline's too), so a report
//! says which one it was measured under.

use std::path::Path;

use serde::Serialize;

/// The idle policy as read from sysfs; a part the kernel does not expose is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdlePolicy {
    /// The cpuidle driver (`haltpoll`, `intel_idle`, `acpi_idle`, ...).
    pub driver: Option<String>,
    /// The cpuidle governor (`haltpoll`, `menu`, `teo`, ...).
    pub governor: Option<String>,
    /// The `haltpoll` governor's polling window in nanoseconds, where the kernel has
    /// that governor (in use or not: see [`IdlePolicy::describe`]); 0 means an idle CPU
    /// halts at once.
    pub guest_halt_poll_ns: Option<u64>,
}

/// Where sysfs is mounted on a Linux machine.
pub const SYSFS: &str = "/sys";

/// Reads the idle policy under `sysfs` (normally [`SYSFS`]); `None` when the kernel
/// exposes none of it (not Linux, no cpuidle, sysfs not mounted).
pub fn read(sysfs: &Path) -> Option<IdlePolicy> {
    let text = |path: &str| {
        std::fs::read_to_string(sysfs.join(path)).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
    };
    let policy = IdlePolicy {
        driver: text("devices/system/cpu/cpuidle/current_driver"),
        governor: text("devices/system/cpu/cpuidle/current_governor")
            .or_else(|| text("devices/system/cpu/cpuidle/current_governor_ro")),
        guest_halt_poll_ns: text("module/haltpoll/parameters/guest_halt_poll_ns").and_then(|s| s.parse().ok()),
    };
    (policy != IdlePolicy { driver: None, governor: None, guest_halt_poll_ns: None }).then_some(policy)
}

impl IdlePolicy {
    /// One line for the report.
    pub fn describe(&self) -> String {
        let unknown = || "unknown".to_owned();
        let mut line = format!(
            "cpu idle: driver {}, governor {}",
            self.driver.clone().unwrap_or_else(unknown),
            self.governor.clone().unwrap_or_else(unknown)
        );
        // The window is the haltpoll governor's: under another governor it is not in effect.
        if self.governor.as_deref() != Some("haltpoll") {
            return line;
        }
        match self.guest_halt_poll_ns {
            Some(0) => line.push_str(
                ", guest halt polling off (guest_halt_poll_ns = 0: an idle CPU halts at once, and waking a \
                 thread on it is an exit to the hypervisor; low-concurrency latencies are higher)",
            ),
            Some(ns) if ns % 1000 == 0 => line.push_str(&format!(", guest halt polling up to {} µs", ns / 1000)),
            Some(ns) => line.push_str(&format!(", guest halt polling up to {ns} ns")),
            None => {}
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_guest_with_halt_polling_off_says_so() {
        let root = tempfile::tempdir().unwrap();
        put(root.path(), "devices/system/cpu/cpuidle/current_driver", "haltpoll\n");
        put(root.path(), "devices/system/cpu/cpuidle/current_governor", "haltpoll\n");
        put(root.path(), "module/haltpoll/parameters/guest_halt_poll_ns", "0\n");
        let policy = read(root.path()).unwrap();
        assert_eq!(
            policy,
            IdlePolicy {
                driver: Some("haltpoll".into()),
                governor: Some("haltpoll".into()),
                guest_halt_poll_ns: Some(0)
            }
        );
        assert!(policy.describe().contains("guest halt polling off"), "{}", policy.describe());

        put(root.path(), "module/haltpoll/parameters/guest_halt_poll_ns", "200000\n");
        let policy = read(root.path()).unwrap();
        assert_eq!(policy.guest_halt_poll_ns, Some(200_000));
        assert!(policy.describe().ends_with("guest halt polling up to 200 µs"), "{}", policy.describe());
        put(root.path(), "module/haltpoll/parameters/guest_halt_poll_ns", "500\n");
        assert!(read(root.path()).unwrap().describe().ends_with("guest halt polling up to 500 ns"));
    }

    #[test]
    fn the_polling_window_of_a_governor_not_in_use_is_not_reported() {
        let root = tempfile::tempdir().unwrap();
        put(root.path(), "devices/system/cpu/cpuidle/current_driver", "intel_idle\n");
        put(root.path(), "devices/system/cpu/cpuidle/current_governor", "menu\n");
        put(root.path(), "module/haltpoll/parameters/guest_halt_poll_ns", "0\n");
        let policy = read(root.path()).unwrap();
        assert_eq!(policy.guest_halt_poll_ns, Some(0));
        assert_eq!(policy.describe(), "cpu idle: driver intel_idle, governor menu");
    }

    #[test]
    fn a_host_without_haltpoll_reports_its_driver_alone_and_no_sysfs_reports_nothing() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(read(root.path()), None);
        put(root.path(), "devices/system/cpu/cpuidle/current_driver", "intel_idle\n");
        put(root.path(), "devices/system/cpu/cpuidle/current_governor_ro", "menu\n");
        let policy = read(root.path()).unwrap();
        assert_eq!(
            policy,
            IdlePolicy { driver: Some("intel_idle".into()), governor: Some("menu".into()), guest_halt_poll_ns: None }
        );
        assert_eq!(policy.describe(), "cpu idle: driver intel_idle, governor menu");
    }
}
