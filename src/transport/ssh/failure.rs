//! What went wrong with an ssh connection, from what ssh printed: the
//! failures a person can act on (refused, timed out, host key, login) get
//! a variant of their own; anything else keeps ssh's words.

use super::super::TransportError;

pub(super) fn connect_error(dialed: &str, err: openssh::Error) -> TransportError {
    match &err {
        // The log of an ssh that ran and failed; when ssh could not start at
        // all, an OS error instead.
        openssh::Error::Connect(io) if io.raw_os_error().is_none() => {
            classify(dialed, &io.to_string())
        }
        openssh::Error::Connect(io) => TransportError::other(format!("cannot run `ssh`: {io}")),
        _ => TransportError::other(format!(
            "cannot connect to `{dialed}`: {}",
            crate::error_chain(&err)
        )),
    }
}

/// What went wrong, from what ssh printed.
pub(super) fn classify(dialed: &str, ssh_stderr: &str) -> TransportError {
    let text = ssh_message(ssh_stderr);
    known_failure(dialed, &text).unwrap_or_else(|| {
        TransportError::other(if text.is_empty() {
            format!("`ssh` to `{dialed}` failed without saying why")
        } else {
            format!("`{dialed}`: {text}")
        })
    })
}

/// What ssh printed, without carriage returns, `ssh: ` prefixes and notes
/// about keys it just recorded.
pub(super) fn ssh_message(ssh_stderr: &str) -> String {
    ssh_stderr
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.starts_with("Warning: Permanently added "))
        .map(|line| line.strip_prefix("ssh: ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// The failures that have a variant of their own.
pub(super) fn known_failure(dialed: &str, text: &str) -> Option<TransportError> {
    let dialed = dialed.to_owned();
    let changed = text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED");
    if changed
        || text.contains("Host key verification failed")
        || (text.contains("No ") && text.contains(" host key is known for "))
    {
        Some(TransportError::HostKey { dialed, changed })
    } else if text.contains("Connection refused") {
        Some(TransportError::Refused { dialed })
    } else if text.contains("Permission denied (")
        || text.contains("Too many authentication failures")
    {
        Some(TransportError::Auth { dialed })
    } else if text.contains("timed out") || text.contains("not responding") {
        Some(TransportError::Timeout { dialed })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> &'static str {
        "root@127.0.0.1:26579"
    }

    // What OpenSSH 9.2 wrote to the master's log in each case.

    #[test]
    fn unknown_host_key_is_a_host_key_error() {
        let stderr = "No ED25519 host key is known for [127.0.0.1]:26579 and you have requested strict checking.\r\n\
                      Host key verification failed.\r\n";
        assert!(matches!(
            classify(name(), stderr),
            TransportError::HostKey { changed: false, .. }
        ));
    }

    #[test]
    fn changed_host_key_is_a_host_key_error() {
        let stderr = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
            @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n\
            @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
            IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r\n\
            Someone could be eavesdropping on you right now (man-in-the-middle attack)!\r\n\
            It is also possible that a host key has just been changed.\r\n\
            The fingerprint for the ED25519 key sent by the remote host is\n\
            SHA256:eZY9Bng4Pz2hfFdiK7ixDjGTSaCs6mnF9n4w9uxWiik.\r\n\
            Please contact your system administrator.\r\n\
            Add correct host key in /tmp/known_hosts to get rid of this message.\r\n\
            Offending ED25519 key in /tmp/known_hosts:1\r\n\
            \x20 remove with:\r\n\
            \x20 ssh-keygen -f \"/tmp/known_hosts\" -R \"[127.0.0.1]:26579\"\r\n\
            Host key for [127.0.0.1]:26579 has changed and you have requested strict checking.\r\n\
            Host key verification failed.\r\n";
        assert!(matches!(
            classify(name(), stderr),
            TransportError::HostKey { changed: true, .. }
        ));
    }

    #[test]
    fn refused_connection() {
        let stderr = "ssh: connect to host 127.0.0.1 port 40123: Connection refused\r\n";
        assert!(matches!(
            classify(name(), stderr),
            TransportError::Refused { .. }
        ));
    }

    #[test]
    fn rejected_key_is_an_auth_error() {
        let stderr = "root@127.0.0.1: Permission denied (publickey).\r\n";
        assert!(matches!(
            classify(name(), stderr),
            TransportError::Auth { .. }
        ));
    }

    #[test]
    fn timeouts() {
        for stderr in [
            "ssh: connect to host 10.255.255.1 port 22: Connection timed out\r\n",
            "Connection timed out during banner exchange\r\nConnection to 127.0.0.1 port 40123 timed out\r\n",
            "Timeout, server 127.0.0.1 not responding.\r\n",
        ] {
            let err = classify(name(), stderr);
            assert!(matches!(err, TransportError::Timeout { .. }), "{stderr}");
        }
    }

    #[test]
    fn anything_else_keeps_what_ssh_said() {
        let stderr = "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.\r\n\
                      ssh: Could not resolve hostname nowhere.invalid: Name or service not known\r\n";
        match classify(name(), stderr) {
            TransportError::Other { message } => assert_eq!(
                message,
                "`root@127.0.0.1:26579`: Could not resolve hostname nowhere.invalid: Name or service not known"
            ),
            other => panic!("unexpected {other:?}"),
        }
        let err = classify(name(), "\r\n");
        assert_eq!(
            err.to_string(),
            "`ssh` to `root@127.0.0.1:26579` failed without saying why"
        );
    }
}
