//! API authentication as Census does it: `Authorization: Bearer secret-token:…`, or HTTP Basic
//! with user `bearer` and the token as password (older Census docs, the Dagster client). The
//! `secret-token:` prefix is optional on either side. Tokens are compared in constant time (as
//! SHA-256 digests, so neither the content nor the length of a configured token shows in the
//! time an answer takes) and never appear in logs, errors or pages.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

const PREFIX: &str = "secret-token:";

/// The SHA-256 digests of the accepted tokens, without their `secret-token:` prefix.
pub struct Tokens(Vec<[u8; 32]>);

fn digest(token: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(Sha256::digest(token).as_slice());
    out
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.0.len())
    }
}

fn bare(token: &str) -> &[u8] {
    token.trim().strip_prefix(PREFIX).unwrap_or(token.trim()).as_bytes()
}

/// Why a request is not authenticated (said in the 401 body; never echoes what was sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Missing,
    Malformed,
    Wrong,
}

impl Denied {
    pub fn message(self) -> &'static str {
        match self {
            Denied::Missing => {
                "authentication required: send `Authorization: Bearer secret-token:<your API token>` (or HTTP Basic with user `bearer` and the token as password)"
            }
            Denied::Malformed => {
                "malformed Authorization header: use `Bearer secret-token:<your API token>` or HTTP Basic with user `bearer` and the token as password"
            }
            Denied::Wrong => "invalid API token",
        }
    }
}

impl Tokens {
    pub fn new(tokens: &[Secret]) -> Tokens {
        Tokens(tokens.iter().map(|t| bare(t.expose())).filter(|t| !t.is_empty()).map(digest).collect())
    }

    fn accepts(&self, presented: &[u8]) -> bool {
        // Digests have one size whatever the lengths, so `ct_eq` compares all 32 bytes of each
        // (a slice comparison of different lengths returns at once, telling the length). Every
        // configured token is compared (no early exit).
        let presented_digest = digest(presented);
        let mut ok = subtle::Choice::from(0);
        for t in &self.0 {
            ok |= t.ct_eq(&presented_digest);
        }
        bool::from(ok) && !presented.is_empty()
    }

    /// Check an `Authorization` header value.
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), Denied> {
        let Some(raw) = header else { return Err(Denied::Missing) };
        let text = std::str::from_utf8(raw).map_err(|_| Denied::Malformed)?.trim();
        let (scheme, rest) = text.split_once(' ').ok_or(Denied::Malformed)?;
        let rest = rest.trim();
        let token: String = if scheme.eq_ignore_ascii_case("bearer") {
            rest.to_string()
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest).map_err(|_| Denied::Malformed)?;
            let decoded = String::from_utf8(decoded).map_err(|_| Denied::Malformed)?;
            let (user, password) = decoded.split_once(':').ok_or(Denied::Malformed)?;
            if !user.eq_ignore_ascii_case("bearer") {
                return Err(Denied::Wrong);
            }
            password.to_string()
        } else {
            return Err(Denied::Malformed);
        };
        if token.is_empty() {
            return Err(Denied::Missing);
        }
        if self.accepts(bare(&token)) { Ok(()) } else { Err(Denied::Wrong) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&[Secret::new("secret-token:abc123"), Secret::new("other")])
    }

    #[test]
    fn bearer_and_basic_with_or_without_prefix() {
        let t = tokens();
        assert_eq!(t.check(Some(b"Bearer secret-token:abc123")), Ok(()));
        assert_eq!(t.check(Some(b"bearer abc123")), Ok(()));
        assert_eq!(t.check(Some(b"Bearer secret-token:other")), Ok(()));
        let basic = base64::engine::general_purpose::STANDARD.encode("bearer:secret-token:abc123");
        assert_eq!(t.check(Some(format!("Basic {basic}").as_bytes())), Ok(()));
    }

    #[test]
    fn refusals() {
        let t = tokens();
        assert_eq!(t.check(None), Err(Denied::Missing));
        assert_eq!(t.check(Some(b"Bearer")), Err(Denied::Malformed));
        assert_eq!(t.check(Some(b"Bearer secret-token:abc124")), Err(Denied::Wrong));
        assert_eq!(t.check(Some(b"Bearer secret-token:")), Err(Denied::Wrong));
        assert_eq!(t.check(Some(b"Token abc123")), Err(Denied::Malformed));
        let basic = base64::engine::general_purpose::STANDARD.encode("admin:abc123");
        assert_eq!(t.check(Some(format!("Basic {basic}").as_bytes())), Err(Denied::Wrong));
        assert_eq!(t.check(Some(b"Basic !!!")), Err(Denied::Malformed));
    }

    #[test]
    fn tokens_are_kept_and_compared_as_fixed_size_digests() {
        let t = tokens();
        // Only digests are kept: 32 bytes each, whatever the token's length.
        assert_eq!(t.0.len(), 2);
        assert!(t.0.iter().all(|d| d.len() == 32));
        assert_eq!(t.0[0], digest(b"abc123"));
        assert!(!t.0.iter().any(|d| d.windows(6).any(|w| w == b"abc123")));
        // Every length compares the same way: shorter, longer, a prefix, an extension.
        for wrong in [&b"a"[..], b"abc12", b"abc1234", b"abc123abc123abc123abc123abc123abc123abc123", b"other!", b"othe"] {
            assert!(!t.accepts(wrong), "{:?}", String::from_utf8_lossy(wrong));
        }
        assert!(t.accepts(b"abc123") && t.accepts(b"other"));
        assert!(!t.accepts(b""));
        assert!(!Tokens::new(&[]).accepts(b"abc123"));
    }
}
