//! `reconciler provision`: the Debian packages each server needs for its
//! roles (`units::HostUnits::packages`), installed where missing, never
//! removed or upgraded. A converged server costs one round trip and no
//! apt-get at all.

use std::time::Duration;

use futures::StreamExt as _;

use crate::definitions::{Server, ServerName};
use crate::shell::quote;
use crate::transport::Connector;

const PROVISION_SH: &str = include_str!("provision.sh");

/// What provision did, or would do, on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provisioned {
    /// Every package is installed.
    Converged,
    /// `--dry-run`: these are missing.
    WouldInstall(Vec<String>),
    Installed(Vec<String>),
}

/// The script for `packages`.
pub fn script(packages: &[String], dry_run: bool) -> String {
    let mut s = format!("DRY_RUN={}\n", u8::from(dry_run));
    s.push_str(PROVISION_SH);
    s.push_str(crate::shell::STEPS);
    s.push_str("\nprovision_main");
    for package in packages {
        s.push(' ');
        s.push_str(&quote(package));
    }
    s.push('\n');
    s
}

fn decode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Reads the script's reports.
pub fn read(stdout: &[u8], dry_run: bool) -> Result<Provisioned, String> {
    let text = String::from_utf8_lossy(stdout);
    let mut missing = Vec::new();
    let mut done = false;
    for line in text.lines() {
        let mut fields = line.splitn(3, '\t');
        let (Some(kind), Some(name), value) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let value = decode(value.unwrap_or_default());
        match kind {
            "@failed" => return Err(format!("{name} failed:\n{}", value.trim_end())),
            "@missing" => missing = value.split_whitespace().map(str::to_owned).collect(),
            "@done" => done = true,
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
                    .map_err(|e| crate::error_chain(&e))?;
                let output = transport
                    .run(&script(&packages, dry_run), Duration::from_secs(2_800))
                    .await
                    .map_err(|e| crate::error_chain(&e))?;
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

    fn line(kind: &str, name: &str, value: &str) -> String {
        use base64::Engine as _;
        format!(
            "@{kind}\t{name}\t{}\n",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }

    #[test]
    fn reports_become_outcomes() {
        let converged = line("missing", "-", "") + &line("done", "provision", "");
        assert_eq!(
            read(converged.as_bytes(), false),
            Ok(Provisioned::Converged)
        );
        let missing = line("missing", "-", "php8.2-intl nginx") + &line("done", "provision", "");
        assert_eq!(
            read(missing.as_bytes(), true),
            Ok(Provisioned::WouldInstall(vec![
                "php8.2-intl".into(),
                "nginx".into()
            ]))
        );
        let failed = line("missing", "-", "x")
            + &line("failed", "apt-get install", "E: Unable to locate package x");
        assert!(
            read(failed.as_bytes(), false)
                .unwrap_err()
                .contains("Unable to locate package x")
        );
        assert!(read(b"", false).is_err());
    }

    #[test]
    fn package_names_are_quoted_words() {
        let script = script(&["php8.2-intl".into(), "a'b".into()], true);
        assert!(script.starts_with("DRY_RUN=1\n"));
        assert!(
            script
                .trim_end()
                .ends_with(r"provision_main 'php8.2-intl' 'a'\''b'")
        );
    }
}
