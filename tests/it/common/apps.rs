//! Apps on the fleet, and what their own (hostile) code can do: commands
//! run as an app's Unix user on the server (`setpriv`), as its code runs.

use super::Repo;
use reconciler::shell::quote;

/// `setpriv` line that runs a command as `app`, as the app's code runs.
pub fn as_app(app: &str, command: &str) -> String {
    format!(
        "setpriv --reuid={app} --regid={app} --init-groups -- sh -c {}",
        quote(command)
    )
}

/// A web app on `server` (its domain `<name>.test`); `extra` is YAML added
/// to its server's role.
pub fn web_app(repo: &Repo, name: &str, server: &str, extra: &str) {
    repo.write(
        &format!("apps/{name}.yaml"),
        &format!(
            "name: {name}\ncluster: fleet\nrepo: /srv/{name}.git\nphp: \"8.2\"\ndomains: [{name}.test]\n\
             servers:\n  - name: {server}\n    web: {{ max_workers: 2, min_spare_workers: 1, initial_workers: 1, max_spare_workers: 1 }}\n{extra}"
        ),
    );
}

/// Writes `files` (path in the release, content) into `/home/<app>/releases/<sha>`
/// as the app, and makes that release live the way a release does:
/// `current -> releases/<sha>`.
pub fn live_release(repo: &Repo, server: &str, app: &str, sha: &str, files: &[(&str, &str)]) {
    let release = format!("/home/{app}/releases/{sha}");
    let mut script = format!("set -e\ncd /home/{app}\nrm -rf {}\n", quote(&release));
    for (path, content) in files {
        let path = format!("{release}/{path}");
        let dir = path.rsplit_once('/').map_or("/", |(dir, _)| dir);
        script.push_str(&format!(
            "mkdir -p {}\nprintf %s {} > {}\n",
            quote(dir),
            quote(content),
            quote(&path)
        ));
    }
    // Dated in the past, as a release's files carry their commit's time:
    // OPcache does not cache a file changed in the last 2 seconds.
    script.push_str(&format!(
        "find {} -exec touch -h -d '1 hour ago' {{}} +\n",
        quote(&release)
    ));
    script.push_str(&format!(
        "ln -sfn releases/{sha} /home/{app}/.current.new && mv -fT /home/{app}/.current.new /home/{app}/current\n"
    ));
    repo.ssh(server, &as_app(app, &script));
}
