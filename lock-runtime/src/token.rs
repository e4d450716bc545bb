//! Owner tokens: 128 random bits from the operating system, as 32 hex digits.
//!
//! The OS is asked for randomness in blocks of 64 tokens per thread, so a lock costs no
//! system call of its own; every token is still fresh OS randomness, used once.

use std::cell::RefCell;

use crate::error::LockError;

const TOKEN_BYTES: usize = 16;
const BLOCK: usize = 64 * TOKEN_BYTES;

struct Pool {
    bytes: [u8; BLOCK],
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; BLOCK], used: BLOCK }) };
}

/// A fresh, unguessable owner token.
pub(crate) fn new_token(key: &str) -> Result<String, LockError> {
    let mut raw = [0u8; TOKEN_BYTES];
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.used == BLOCK {
            getrandom::fill(&mut pool.bytes)?;
            pool.used = 0;
        }
        let at = pool.used;
        raw.copy_from_slice(&pool.bytes[at..at + TOKEN_BYTES]);
        // Never hand out the same bytes twice.
        pool.bytes[at..at + TOKEN_BYTES].fill(0);
        pool.used += TOKEN_BYTES;
        Ok::<(), getrandom::Error>(())
    })
    .map_err(|e| LockError::backend(key, format!("the OS random source failed: {e}")))?;
    let mut hex = String::with_capacity(2 * TOKEN_BYTES);
    for b in raw {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    Ok(hex)
}

/// A fresh token that carries `owner` after a `.` (hex digits have none), so that
/// inspection can show who holds a lock without showing the token: see
/// [`crate::info::token_prefix`].
pub(crate) fn owned_token(key: &str, owner: Option<&str>) -> Result<String, LockError> {
    let mut token = new_token(key)?;
    if let Some(owner) = owner {
        token.reserve(owner.len() + 1);
        token.push(OWNER_MARK);
        token.push_str(owner);
    }
    Ok(token)
}

/// What separates a token's random part from the identity it carries.
pub(crate) const OWNER_MARK: char = '.';

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_token_carries_its_owner_after_the_random_part() {
        let token = owned_token("k", Some("host-1:42")).unwrap();
        assert_eq!(token.len(), 32 + 1 + "host-1:42".len());
        assert!(token.ends_with(".host-1:42"));
        assert_eq!(owned_token("k", None).unwrap().len(), 32);
    }

    #[test]
    fn new_token_is_32_hex_digits_and_unique() {
        let tokens: std::collections::HashSet<String> =
            (0..1000).map(|_| new_token("k").unwrap()).collect();
        assert_eq!(tokens.len(), 1000, "a token repeated across pool refills");
        assert!(
            tokens
                .iter()
                .all(|t| t.len() == 32 && t.bytes().all(|c| c.is_ascii_hexdigit()))
        );
    }
}
