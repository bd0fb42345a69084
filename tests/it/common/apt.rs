//! A local apt repository on fleet servers, for tests that install
//! packages with `reconciler provision`: the servers reach no mirror.

use std::path::Path;
use std::process::Command;

use super::Fleet;

/// `dir` (its .debs and a `Packages` index) as the only apt source of
/// each server, until dropped: the servers' own sources are set aside
/// meanwhile and put back after, with the packages `remove` names purged.
pub struct LocalApt {
    containers: Vec<String>,
    remove: Vec<String>,
}

impl LocalApt {
    /// Serves `dir` to `servers` (fleet names) as `deb [trusted=yes]
    /// file:/srv/repo ./`.
    pub fn serve(fleet: &Fleet, servers: &[&str], dir: &Path, remove: &[&str]) -> Self {
        let containers: Vec<String> = servers
            .iter()
            .map(|name| fleet.server(name).container.clone())
            .collect();
        for container in &containers {
            let set_up = Command::new("docker")
                .args(["exec", container, "sh", "-c"])
                .arg(
                    "set -e\nrm -rf /srv/repo && mkdir -p /srv/repo /root/apt-saved\n\
                     mv /etc/apt/sources.list /root/apt-saved/ 2>/dev/null || true\n\
                     find /etc/apt/sources.list.d -maxdepth 1 -type f -exec mv {} /root/apt-saved/ \\;\n\
                     echo 'deb [trusted=yes] file:/srv/repo ./' > /etc/apt/sources.list.d/reconciler-fixture.list\n",
                )
                .status()
                .expect("docker exec");
            assert!(
                set_up.success(),
                "{container}: cannot set the apt sources aside"
            );
            let copied = Command::new("docker")
                .arg("cp")
                .arg(format!("{}/.", dir.display()))
                .arg(format!("{container}:/srv/repo/"))
                .status()
                .expect("docker cp");
            assert!(
                copied.success(),
                "{container}: cannot copy {}",
                dir.display()
            );
        }
        Self {
            containers,
            remove: remove.iter().map(|p| (*p).to_owned()).collect(),
        }
    }
}

impl Drop for LocalApt {
    fn drop(&mut self) {
        for container in &self.containers {
            let purge = if self.remove.is_empty() {
                String::new()
            } else {
                format!("dpkg --purge {} >/dev/null 2>&1; ", self.remove.join(" "))
            };
            let _ = Command::new("docker")
                .args(["exec", container, "sh", "-c"])
                .arg(format!(
                    "{purge}rm -rf /srv/repo /etc/apt/sources.list.d/reconciler-fixture.list; \
                     mv /root/apt-saved/sources.list /etc/apt/ 2>/dev/null; \
                     mv /root/apt-saved/* /etc/apt/sources.list.d/ 2>/dev/null; \
                     rm -rf /root/apt-saved /var/lib/apt/lists/*_srv_repo_*"
                ))
                .status();
        }
    }
}
