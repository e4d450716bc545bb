//! Key naming: a lock key's hash tag and cluster slot, and the companion keys and
//! channel that live in its slot (fence counter, waiting writers, waiters' mark, release
//! channel).

/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16_384;

/// The hash tag of a key, as Redis Cluster reads it: what stands between the first `{`
/// and the next `}`, when that is not empty.
pub(crate) fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')?;
    (close > 0).then(|| &key[open + 1..open + 1 + close])
}

/// The hash slot of a key (CRC16 of its hash tag, or of the whole key).
pub(crate) fn slot(key: &str) -> u16 {
    let hashed = hash_tag(key).unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed.as_bytes()) % SLOTS
}

/// A companion key or channel of a lock key, in the lock key's slot: `{K}:suffix`, or
/// `K:suffix` when K already holds a hash tag (wrapping it again would move it). A key
/// with a `}` but no tag has no companion in its slot; the cluster store refuses it.
fn companion(key: &str, suffix: &str) -> String {
    if hash_tag(key).is_some() {
        format!("{key}:{suffix}")
    } else {
        format!("{{{key}}}:{suffix}")
    }
}

/// The fence counter of a lock key.
pub(crate) fn fence_key(key: &str) -> String {
    companion(key, "fence")
}

/// The writers waiting for a read/write lock (their intents).
pub(crate) fn writers_key(key: &str) -> String {
    companion(key, "writers")
}

/// The mark of a lock key that someone waits for: set by a waiting try (before its
/// `SET NX`, in the same round trip), deleted by the release that announces it, so that a
/// release nobody waits for announces nothing (issue 18).
pub(crate) fn waiters_key(key: &str) -> String {
    companion(key, "waiters")
}

/// The channel a release of `key` is announced on.
pub(crate) fn release_channel(key: &str) -> String {
    companion(key, "released")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companions_wrap_a_key_without_tag() {
        assert_eq!(fence_key("lock:order:1"), "{lock:order:1}:fence");
        assert_eq!(release_channel("lock:order:1"), "{lock:order:1}:released");
    }

    #[test]
    fn companions_keep_an_existing_tag() {
        assert_eq!(fence_key("lock:{account}:1"), "lock:{account}:1:fence");
        assert_eq!(
            release_channel("lock:{account}:1"),
            "lock:{account}:1:released"
        );
    }

    #[test]
    fn companions_share_the_lock_key_slot() {
        for key in ["lock:order:1", "lock:{account}:1", "lock:{:x", "a{b}c{d}"] {
            assert_eq!(slot(&fence_key(key)), slot(key), "{key}");
            assert_eq!(slot(&release_channel(key)), slot(key), "{key}");
            assert_eq!(slot(&waiters_key(key)), slot(key), "{key}");
        }
    }

    #[test]
    fn slot_matches_redis_reference_values() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot("123456789"), 0x31C3 % SLOTS);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
    }
}
