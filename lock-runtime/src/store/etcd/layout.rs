//! Where a lock's data lives in etcd: the key itself (a lock), its lease members and its
//! waiters' places in its queue, after a NUL so that they sort right after the key and
//! never match a lock key's glob.

/// A semaphore's or read/write lock's lease of `key`: `key\0m/<member>`.
pub(super) fn member(key: &str, member: &str) -> Vec<u8> {
    [key.as_bytes(), b"\0m/", member.as_bytes()].concat()
}

/// The start of `key`'s members.
pub(super) fn members(key: &str) -> Vec<u8> {
    [key.as_bytes(), b"\0m/"].concat()
}

/// A waiter's place in `key`'s queue: `key\0q/<member>` (`<member>` is the hold it waits
/// for, e.g. `w:<token>`); its create revision is its place.
pub(super) fn place(key: &str, member: &str) -> Vec<u8> {
    [key.as_bytes(), b"\0q/", member.as_bytes()].concat()
}

/// The start of `key`'s queue.
pub(super) fn queue(key: &str) -> Vec<u8> {
    [key.as_bytes(), b"\0q/"].concat()
}

/// The start of everything of `key` but the key itself.
pub(super) fn companions(key: &str) -> Vec<u8> {
    [key.as_bytes(), b"\0"].concat()
}

/// The end (exclusive) of a range of keys that start with `prefix`.
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte is 0xff: to the end of the keyspace.
    vec![0]
}

/// The end of the range of `key` and its companions: `key\x01`.
pub(super) fn all_end(key: &str) -> Vec<u8> {
    [key.as_bytes(), b"\x01"].concat()
}

/// The member name's tag: `s3` of `s3:<token>`.
pub(super) fn tag_of(member: &str) -> &str {
    member.split(':').next().unwrap_or(member)
}

/// The lock key an etcd key belongs to, and its member's name when it is a lease; `None`
/// for a place in a queue.
pub(super) fn owner(etcd_key: &[u8]) -> Option<(String, Option<String>)> {
    let text = String::from_utf8_lossy(etcd_key);
    match text.split_once('\0') {
        None => Some((text.into_owned(), None)),
        Some((key, rest)) => rest
            .strip_prefix("m/")
            .map(|member| (key.to_owned(), Some(member.to_owned()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companions_sort_between_the_key_and_its_end() {
        let key = "lock:a";
        let member = member(key, "s3:tok");
        assert!(key.as_bytes() < member.as_slice() && member < all_end(key));
        assert!(place(key, "w:t") < all_end(key));
        assert!(place(key, "w:t").starts_with(&queue(key)));
        // `lock:a:b` is another key, outside `lock:a`'s range.
        assert!(b"lock:a:b".as_slice() > all_end(key).as_slice());
        assert_eq!(prefix_end(b"ab"), b"ac");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(
            owner(&member),
            Some(("lock:a".into(), Some("s3:tok".into())))
        );
        assert_eq!(owner(&place(key, "w:t")), None);
        assert_eq!(tag_of("s3:tok"), "s3");
    }
}
