//! Secrets: tokens and ids that must not be guessed, and comparing them.
//!
//! Every one of them comes from the operating system's cryptographic
//! generator (`getrandom`), never from a generator seeded from the clock:
//! a token made by one could be rebuilt from the time it was made. Backoff
//! jitter and the like may use anything; what grants access or names
//! something an attacker should not find uses `token` here.

use subtle::ConstantTimeEq as _;

/// Why no secret could be made: the operating system's generator failed
/// (on Linux, only before the kernel's pool is seeded at boot).
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random generator failed: {0}")]
pub struct SecretError(getrandom::Error);

/// `bytes` random bytes from the operating system's cryptographic
/// generator, as `2 * bytes` lowercase hex digits.
///
/// # Errors
///
/// [`SecretError`] when the generator fails.
pub fn token(bytes: usize) -> Result<String, SecretError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(SecretError)?;
    Ok(hex::encode(buffer))
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths
/// only, never on where they first differ.
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hex_of_the_length_asked_and_never_repeat() {
        let tokens: Vec<String> = (0..64).map(|_| token(32).expect("token")).collect();
        for t in &tokens {
            assert_eq!(t.len(), 64, "{t}");
            assert!(t.chars().all(|c| c.is_ascii_hexdigit()), "{t}");
        }
        let distinct: std::collections::BTreeSet<&String> = tokens.iter().collect();
        assert_eq!(distinct.len(), tokens.len());
    }

    #[test]
    fn equal_compares_whole_values() {
        assert!(equal(b"same", b"same"));
        assert!(!equal(b"same", b"sane"));
        assert!(!equal(b"same", b"same-and-more"));
        assert!(equal(b"", b""));
    }
}
