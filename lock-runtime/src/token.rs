//! Owner tokens: 128 random bits from the operating system, as 32 hex digits.

use crate::error::LockError;

/// A fresh, unguessable owner token.
pub(crate) fn new_token(key: &str) -> Result<String, LockError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| LockError::backend(key, format!("the OS random source failed: {e}")))?;
    let mut hex = String::with_capacity(32);
    for b in bytes {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    Ok(hex)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_token_is_32_hex_digits_and_unique() {
        let a = new_token("k").unwrap();
        let b = new_token("k").unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
