//! Key helpers: [`resource_key`], [`operation_key`], the prefix rule and key checks.

use std::fmt::Display;

use crate::error::LockError;

/// The prefix every lock key gets in the store unless it already starts with it.
///
/// ```
/// assert_eq!(locked::Locker::memory().full_key("job").unwrap(), format!("{}job", locked::DEFAULT_PREFIX));
/// ```
pub const DEFAULT_PREFIX: &str = "lock:";

/// The longest key accepted, prefix included: 1 KiB.
///
/// ```
/// let too_long = "k".repeat(locked::MAX_KEY_LEN);
/// assert!(locked::Locker::memory().full_key(&too_long).is_err());
/// ```
pub const MAX_KEY_LEN: usize = 1024;

/// The key of a lock on one resource: `lock:<resource>:<id>`.
///
/// It already carries the default prefix, so a [`Locker`](crate::Locker) stores it as is.
///
/// # Examples
///
/// ```
/// assert_eq!(locked::resource_key("user", 123), "lock:user:123");
/// assert_eq!(locked::resource_key("order", "ORD-456"), "lock:order:ORD-456");
/// ```
pub fn resource_key(resource: impl Display, id: impl Display) -> String {
    format!("{DEFAULT_PREFIX}{resource}:{id}")
}

/// The key of a lock on one operation for one identifier: `lock:op:<operation>:<identifier>`.
///
/// # Examples
///
/// ```
/// assert_eq!(
///     locked::operation_key("send-email", "user@example.com"),
///     "lock:op:send-email:user@example.com"
/// );
/// ```
pub fn operation_key(operation: impl Display, identifier: impl Display) -> String {
    format!("{DEFAULT_PREFIX}op:{operation}:{identifier}")
}

/// The stored key: `prefix + key`, unless `key` already starts with `prefix`.
pub(crate) fn full_key(prefix: &str, key: &str) -> Result<String, LockError> {
    if key.is_empty() {
        return Err(invalid(
            key,
            "the key is empty; name the resource, e.g. \"order:123\"",
        ));
    }
    let full = if key.starts_with(prefix) {
        key.to_owned()
    } else {
        format!("{prefix}{key}")
    };
    if full.len() > MAX_KEY_LEN {
        return Err(invalid(
            &full,
            &format!(
                "the key is {} bytes, over the {MAX_KEY_LEN}-byte limit; lock on a short id or a hash",
                full.len()
            ),
        ));
    }
    Ok(full)
}

/// Joins the literal parts of a key template with its formatted placeholders, refusing a
/// placeholder that formatted to nothing (`order:{id}` with an empty `id` would lock `order:`).
pub(crate) fn build_key(literals: &[&str], values: &[String]) -> Result<String, LockError> {
    let mut key = String::new();
    for (i, lit) in literals.iter().enumerate() {
        key.push_str(lit);
        if let Some(value) = values.get(i) {
            if value.is_empty() {
                key.push_str("{}");
                return Err(invalid(
                    &key,
                    &format!(
                        "placeholder {} formatted to an empty string; pass a non-empty value",
                        i + 1
                    ),
                ));
            }
            key.push_str(value);
        }
    }
    Ok(key)
}

fn invalid(key: &str, reason: &str) -> LockError {
    // Keep error messages readable: show at most 120 chars of a huge key.
    let shown = match key.char_indices().nth(120) {
        Some((i, _)) => format!("{}...", &key[..i]),
        None => key.to_owned(),
    };
    LockError::InvalidKey {
        key: shown,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_key_plain_key_gets_prefix() {
        assert_eq!(
            full_key("lock:", "my-task").ok().as_deref(),
            Some("lock:my-task")
        );
    }

    #[test]
    fn full_key_prefixed_key_is_kept() {
        let key = resource_key("order", 123);
        assert_eq!(
            full_key("lock:", &key).ok().as_deref(),
            Some("lock:order:123")
        );
    }

    #[test]
    fn full_key_empty_is_invalid() {
        assert!(matches!(
            full_key("lock:", ""),
            Err(LockError::InvalidKey { .. })
        ));
    }

    #[test]
    fn full_key_over_limit_is_invalid_and_message_is_short() {
        let err = full_key("lock:", &"x".repeat(2000)).unwrap_err();
        assert!(matches!(err, LockError::InvalidKey { .. }));
        assert!(err.to_string().contains("1024-byte limit"));
        assert!(err.to_string().len() < 400);
    }

    #[test]
    fn full_key_at_limit_is_valid() {
        let key = "x".repeat(MAX_KEY_LEN - "lock:".len());
        assert!(full_key("lock:", &key).is_ok());
    }

    #[test]
    fn build_key_interleaves_parts() {
        let key = build_key(&["order:", ":", ""], &["1".into(), "b".into()]);
        assert_eq!(key.ok().as_deref(), Some("order:1:b"));
    }

    #[test]
    fn build_key_empty_placeholder_is_invalid() {
        let err = build_key(&["order:", ""], &[String::new()]).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
