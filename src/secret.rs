//! Secrets and ids that must not be guessed (lock tokens, deploy tokens,
//! job ids): from the OS's cryptographic generator, never from a seeded
//! one.

/// `bytes` random bytes from the OS, as lowercase hex.
pub fn hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // The OS's generator does not fail on a running Linux system; if it
    // ever did, no secret may be made from anything weaker.
    if let Err(e) = getrandom::fill(&mut buffer) {
        panic!("the OS's random generator failed: {e}");
    }
    hex::encode(buffer)
}

/// A token of 128 random bits, as 32 hex characters.
pub fn token() -> String {
    hex(16)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_long_and_never_repeat() {
        let tokens: std::collections::BTreeSet<String> =
            (0..1000).map(|_| super::token()).collect();
        assert_eq!(tokens.len(), 1000);
        assert!(
            tokens
                .iter()
                .all(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }
}
