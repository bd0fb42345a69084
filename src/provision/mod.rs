//! `reconciler provision`: the Debian packages each server needs for its
//! roles (`units::HostUnits::packages`), installed where missing, never
//! removed or upgraded. A converged server costs one round trip and no
//! apt-get at all.

use std::time::Duration;

use futures::StreamExt as _;

use crate::definitions::{Server, ServerName};
use crate::remote::{Script, protocol};
use crate::transport::Connector;

const PROVISION_SH: &str = include_str!("provision.sh");

/// What provision did, or would do, on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provisioned {
    /// Every package is installed.
    Converged,
    /// `--dry-run`: these are missing.
    WouldInstall(Vec<String>),
    /// These were missing and are installed now (Debian package names).
    Installed(Vec<String>),
}

/// The script for `packages`.
pub fn script(packages: &[String], dry_run: bool) -> String {
    let mut call = vec!["provision_main"];
    call.extend(packages.iter().map(String::as_str));
    Script::new()
        .var("DRY_RUN", u8::from(dry_run).to_string())
        .build(PROVISION_SH, &call)
}

/// Reads the script's records.
pub fn read(stdout: &[u8], dry_run: bool) -> Result<Provisioned, String> {
    let records = protocol::parse(stdout).map_err(|e| format!("the answer is garbled: {e}"))?;
    let mut missing = Vec::new();
    let mut done = false;
    for record in &records {
        let value = record.text(1);
        match record.kind.as_str() {
            "failed" => {
                return Err(format!("{} failed:\n{}", record.text(0), value.trim_end()));
            }
            "missing" => missing = value.split_whitespace().map(str::to_owned).collect(),
            "done" => done = true,
            _ => {}
        }
    }
    match (done, missing.is_empty(), dry_run) {
        (false, _, _) => Err("provision ended before it finished".into()),
        (true, true, _) => Ok(Provisioned::Converged),
        (true, false, true) => Ok(Provisioned::WouldInstall(missing)),
        (true, false, false) => Ok(Provisioned::Installed(missing)),
    }
}

/// Provisions each server with its packages, `parallel` at a time; each
/// result as it comes.
pub async fn provision(
    servers: Vec<(Server, Vec<String>)>,
    connector: &dyn Connector,
    dry_run: bool,
    parallel: usize,
    each: &(dyn Fn(&ServerName, &Result<Provisioned, String>) + Sync),
) -> Vec<(ServerName, Result<Provisioned, String>)> {
    futures::stream::iter(servers)
        .map(|(server, packages)| async move {
            let result = async {
                let transport = connector
                    .connect(&server)
                    .await
                    .map_err(|e| e.cause().to_string())?;
                let output = transport
                    .run(&script(&packages, dry_run), Duration::from_secs(2_800))
                    .await
                    .map_err(|e| e.cause().to_string())?;
                read(&output.stdout, dry_run)
            }
            .await;
            each(&server.name, &result);
            (server.name.clone(), result)
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: &str, name: &str, value: &str) -> Vec<u8> {
        protocol::encode_text(kind, &[name, value])
    }

    #[test]
    fn reports_become_outcomes() {
        let converged = [line("missing", "-", ""), line("done", "provision", "")].concat();
        assert_eq!(read(&converged, false), Ok(Provisioned::Converged));
        let missing = [
            line("missing", "-", "php8.2-intl nginx"),
            line("done", "provision", ""),
        ]
        .concat();
        assert_eq!(
            read(&missing, true),
            Ok(Provisioned::WouldInstall(vec![
                "php8.2-intl".into(),
                "nginx".into()
            ]))
        );
        let failed = [
            line("missing", "-", "x"),
            line("failed", "apt-get install", "E: Unable to locate package x"),
        ]
        .concat();
        assert!(
            read(&failed, false)
                .unwrap_err()
                .contains("Unable to locate package x")
        );
        assert!(read(b"", false).is_err());
    }

    #[test]
    fn package_names_are_quoted_words() {
        let script = script(&["php8.2-intl".into(), "a'b".into()], true);
        assert!(script.contains("\nDRY_RUN='1'\n"), "{script}");
        assert!(
            script
                .trim_end()
                .ends_with(r"'provision_main' 'php8.2-intl' 'a'\''b'")
        );
    }
}
