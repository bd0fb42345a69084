//! Reads the line-framed output of gather.sh.
//!
//! Each record is a line starting with `@kind`; `@content SIZE PATH` is
//! followed by exactly SIZE bytes and a newline. Unknown records are
//! skipped so that a newer script can add facts an older parser ignores.

use std::collections::{BTreeMap, BTreeSet};

use crate::definitions::{AppName, PhpVersion};

use super::{HostFacts, Init, Journal, Opcache, PathFacts, PathKind, PhpInstall, UserFacts};
use crate::layout::AppPaths;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("the output does not start with `@facts 1`")]
    NotFacts,
    #[error("the output stops before `@end`")]
    Truncated,
    #[error("line {line}: malformed `{record}` record")]
    Malformed { line: usize, record: String },
}

pub fn parse(bytes: &[u8]) -> Result<HostFacts, ParseError> {
    let mut facts = HostFacts::default();
    let mut reader = Reader {
        bytes,
        at: 0,
        line: 0,
    };
    // The version the `@php-fpm` and `@php-cli` records that follow belong to.
    let mut php: Option<PhpVersion> = None;
    let mut user_names: BTreeMap<u32, String> = BTreeMap::new();
    let mut group_names: BTreeMap<u32, String> = BTreeMap::new();
    if reader.next_line().as_deref() != Some("@facts 1") {
        return Err(ParseError::NotFacts);
    }
    loop {
        let Some(line) = reader.next_line() else {
            return Err(ParseError::Truncated);
        };
        let line_no = reader.line;
        let (record, rest) = line.split_once([' ', '\t']).unwrap_or((&line, ""));
        let malformed = || ParseError::Malformed {
            line: line_no,
            record: record.to_owned(),
        };
        match record {
            "@end" => return Ok(facts),
            "@os" => facts.os = rest.to_owned(),
            "@init" => {
                facts.init = if rest == "systemd" {
                    Init::Systemd
                } else {
                    Init::Service
                }
            }
            "@uid" => facts.uid = rest.parse().map_err(|_| malformed())?,
            "@php" => {
                php = Some(PhpVersion::new(rest));
                facts
                    .php
                    .insert(PhpVersion::new(rest), PhpInstall::default());
            }
            "@php-fpm" | "@php-cli" => {
                let install = php
                    .as_ref()
                    .and_then(|v| facts.php.get_mut(v))
                    .ok_or_else(malformed)?;
                let binary = (rest != "-").then(|| rest.to_owned());
                if record == "@php-fpm" {
                    install.fpm = binary;
                } else {
                    install.cli = binary;
                }
            }
            "@package" => {
                facts.packages.insert(rest.to_owned());
            }
            "@tool" => {
                let (tool, path) = rest.split_once(' ').ok_or_else(malformed)?;
                if path != "-" {
                    facts.tools.insert(tool.to_owned(), path.to_owned());
                }
            }
            "@user" => {
                // `name uid gid home shell`; a home may hold spaces.
                let fields: Vec<&str> = rest.splitn(4, ' ').collect();
                let [name, uid, gid, rest] = fields[..] else {
                    return Err(malformed());
                };
                let (home, shell) = rest.rsplit_once(' ').unwrap_or((rest, "-"));
                let number = |s: &str| s.parse::<u32>().map_err(|_| malformed());
                let user = UserFacts {
                    uid: number(uid)?,
                    gid: number(gid)?,
                    home: home.to_owned(),
                    shell: if shell == "-" {
                        String::new()
                    } else {
                        shell.to_owned()
                    },
                };
                user_names
                    .entry(user.uid)
                    .or_insert_with(|| name.to_owned());
                facts.users.insert(name.to_owned(), user);
            }
            "@group" => {
                let mut fields = rest.split(' ').filter(|f| !f.is_empty());
                let name = fields.next().ok_or_else(malformed)?;
                let gid: u32 = fields
                    .next()
                    .and_then(|g| g.parse().ok())
                    .ok_or_else(malformed)?;
                let members: BTreeSet<String> = fields.map(str::to_owned).collect();
                group_names.insert(gid, name.to_owned());
                facts.groups.insert(name.to_owned(), members);
            }
            "@manifest" => facts.manifest.push(rest.to_owned()),
            "@manifest-sha256" => facts.manifest_sha256 = Some(rest.to_owned()),
            "@manifest-ignored" => {
                facts.manifest_ignored = rest.parse().map_err(|_| malformed())?
            }
            "@sudoer" => {
                facts.sudoers.insert(rest.to_owned());
            }
            "@created-user" => {
                facts.created_users.insert(rest.to_owned());
            }
            "@journal-started" => {
                facts.journal.get_or_insert_with(Journal::default).started = rest.to_owned()
            }
            "@journal-holder" => {
                facts.journal.get_or_insert_with(Journal::default).holder = rest.to_owned()
            }
            "@journal-staged" => facts
                .journal
                .get_or_insert_with(Journal::default)
                .staged
                .push(rest.to_owned()),
            "@journal-backup" => {
                facts.journal.get_or_insert_with(Journal::default);
            }
            "@lock" => facts.lock_holder = Some(rest.to_owned()),
            "@generation" => facts.generation = rest.parse().map_err(|_| malformed())?,
            "@pending" => facts.pending_reloads.push(rest.to_owned()),
            "@release" => {
                let (app, release) = rest.split_once(' ').ok_or_else(malformed)?;
                facts
                    .releases
                    .entry(AppName::new(app))
                    .or_default()
                    .releases
                    .push(release.to_owned());
            }
            "@opcache" => {
                let (version, json) = rest.split_once(' ').ok_or_else(malformed)?;
                let status: serde_json::Value =
                    serde_json::from_str(json).map_err(|_| malformed())?;
                facts
                    .opcache
                    .insert(PhpVersion::new(version), Opcache::from_status(&status));
            }
            "@path" => {
                let fields: Vec<&str> = rest.split('\t').collect();
                let [kind, uid, gid, mode, size, path, target, mtime] = fields[..] else {
                    return Err(malformed());
                };
                // find printed numbers; names come from the @user and
                // @group records, the number itself when it has none.
                let owner = uid
                    .parse::<u32>()
                    .ok()
                    .and_then(|uid| user_names.get(&uid))
                    .map_or_else(|| uid.to_owned(), Clone::clone);
                let group = gid
                    .parse::<u32>()
                    .ok()
                    .and_then(|gid| group_names.get(&gid))
                    .map_or_else(|| gid.to_owned(), Clone::clone);
                let kind = match kind {
                    "f" => PathKind::File,
                    "d" => PathKind::Directory,
                    "l" => PathKind::Symlink,
                    _ => PathKind::Other,
                };
                let path_facts = PathFacts {
                    kind,
                    owner,
                    group,
                    mode: u32::from_str_radix(mode, 8).map_err(|_| malformed())?,
                    size: size.parse().map_err(|_| malformed())?,
                    target: (kind == PathKind::Symlink).then(|| target.to_owned()),
                    sha256: None,
                    content: None,
                    // `%T@` has a fraction: seconds are enough.
                    mtime: mtime.split('.').next().and_then(|s| s.parse().ok()),
                };
                if let Some(app) = AppPaths::app_of_current(path)
                    && kind == PathKind::Symlink
                {
                    facts.releases.entry(app).or_default().current = Some(target.to_owned());
                }
                facts.paths.insert(path.to_owned(), path_facts);
            }
            "@sha256" => {
                let (sum, path) = rest.split_once(' ').ok_or_else(malformed)?;
                if let Some(p) = facts.paths.get_mut(path) {
                    p.sha256 = Some(sum.to_owned());
                }
            }
            "@content" => {
                let (size, path) = rest.split_once(' ').ok_or_else(malformed)?;
                let size: usize = size.parse().map_err(|_| malformed())?;
                let content = reader.take(size).ok_or(ParseError::Truncated)?;
                if reader.next_line().as_deref() != Some("") {
                    return Err(malformed());
                }
                if let Some(p) = facts.paths.get_mut(path) {
                    p.content = Some(String::from_utf8_lossy(content).into_owned());
                }
            }
            _ => {}
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    line: usize,
}

impl<'a> Reader<'a> {
    fn next_line(&mut self) -> Option<String> {
        if self.at >= self.bytes.len() {
            return None;
        }
        let rest = &self.bytes[self.at..];
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        self.at += (end + 1).min(rest.len());
        self.line += 1;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let chunk = self.bytes.get(self.at..self.at + n)?;
        self.at += n;
        self.line += chunk.iter().filter(|&&b| b == b'\n').count();
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "@facts 1
@os debian 12
@init service
@uid 0
@php 7.4
@php-fpm -
@php-cli /usr/bin/php7.4
@php 8.2
@php-fpm /usr/sbin/php-fpm8.2
@php-cli /usr/bin/php8.2
@tool nginx /usr/sbin/nginx
@tool cron -
@user root 0 0 /root /bin/bash
@user shop 999 999 /home/shop /usr/sbin/nologin
@sudoer shop
@created-user shop
@group root 0
@group shop 999 www-data
@manifest /etc/cron.d/old
@manifest-sha256 abc
@pending php8.2-fpm
@journal-started 2026-11-22T03:00:00Z
@journal-holder root@laptop (pid 7)
@journal-backup /var/lib/reconciler/backup/apply.x
@journal-staged /etc/cron.d/old
@lock root@ci (pid 9) since 2026-11-22T03:00:01Z
@release shop abc123
@path\tf\t0\t0\t644\t6\t/etc/cron.d/old\t\t1795300000.5
@path\tl\t999\t999\t777\t18\t/home/shop/current\treleases/abc123\t1795300100.25
@path\td\t999\t1234\t750\t4096\t/home/shop\t\t1795300000.0
@opcache 8.2 {\"opcache_enabled\":true,\"memory_usage\":{\"used_memory\":96,\"free_memory\":4,\"wasted_memory\":0},\"opcache_statistics\":{\"num_cached_scripts\":1500,\"hits\":99,\"misses\":1,\"start_time\":1795300000},\"reconciler_release_scripts\":{\"/home/shop/releases/0123456789abcdef0123456789abcdef01234567\":377,\"/home/shop/releases/planted\":5,\"/etc/x\":1}}
@sha256 deadbeef /etc/cron.d/old
@content 7 /etc/cron.d/old
a\n@b
c

@end
";

    #[test]
    fn reads_every_record() {
        let facts = parse(OUTPUT.as_bytes()).expect("parses");
        assert_eq!(facts.os, "debian 12");
        assert_eq!(facts.init, Init::Service);
        assert_eq!(facts.uid, 0);
        assert_eq!(facts.php[&PhpVersion::new("7.4")].fpm, None);
        assert_eq!(
            facts.php[&PhpVersion::new("8.2")].fpm.as_deref(),
            Some("/usr/sbin/php-fpm8.2")
        );
        assert!(facts.has_tool("nginx") && !facts.has_tool("cron"));
        assert_eq!(facts.users["shop"].home, "/home/shop");
        assert!(facts.users["root"].can_log_in() && !facts.users["shop"].can_log_in());
        assert!(facts.sudoers.contains("shop") && facts.created_users.contains("shop"));
        assert_eq!(facts.manifest_sha256.as_deref(), Some("abc"));
        let journal = facts.journal.as_ref().expect("journal");
        assert_eq!(journal.holder, "root@laptop (pid 7)");
        assert_eq!(journal.staged, ["/etc/cron.d/old"]);
        assert_eq!(
            facts.lock_holder.as_deref(),
            Some("root@ci (pid 9) since 2026-11-22T03:00:01Z")
        );
        assert!(facts.groups["shop"].contains("www-data"));
        assert_eq!(facts.manifest, ["/etc/cron.d/old"]);
        assert_eq!(facts.pending_reloads, ["php8.2-fpm"]);
        let cache = &facts.opcache[&PhpVersion::new("8.2")];
        assert_eq!((cache.cached_scripts, cache.fill_percent()), (1500, 96));
        assert_eq!(cache.hit_rate_permille(), 990);
        assert_eq!(cache.start_time, 1795300000);
        assert_eq!(
            cache.release_scripts,
            BTreeMap::from([(
                "/home/shop/releases/0123456789abcdef0123456789abcdef01234567".to_owned(),
                377
            )]),
            "only release directories reconciler makes are counted"
        );
        assert_eq!(facts.paths["/home/shop/current"].mtime, Some(1795300100));
        let shop = &facts.releases[&AppName::new("shop")];
        assert_eq!(shop.current.as_deref(), Some("releases/abc123"));
        assert_eq!(shop.releases, ["abc123"]);
        let old = &facts.paths["/etc/cron.d/old"];
        assert_eq!((old.kind, old.mode), (PathKind::File, 0o644));
        assert_eq!(old.sha256.as_deref(), Some("deadbeef"));
        // Content is taken by length, so a line starting with `@` inside it
        // is content, not a record.
        assert_eq!(old.content.as_deref(), Some("a\n@b\nc\n"));
        let home = &facts.paths["/home/shop"];
        assert_eq!(home.kind, PathKind::Directory);
        assert_eq!((home.owner.as_str(), home.group.as_str()), ("shop", "1234"));
        assert_eq!(old.owner, "root");
    }

    #[test]
    fn output_cut_short_is_an_error() {
        let cut = &OUTPUT[..OUTPUT.len() - 5];
        assert_eq!(parse(cut.as_bytes()), Err(ParseError::Truncated));
        assert_eq!(parse(b"hello"), Err(ParseError::NotFacts));
    }

    #[test]
    fn a_bad_number_names_its_line() {
        let bad = "@facts 1\n@user shop x 1 /home/shop\n@end\n";
        assert_eq!(
            parse(bad.as_bytes()),
            Err(ParseError::Malformed {
                line: 2,
                record: "@user".into()
            })
        );
    }
}
