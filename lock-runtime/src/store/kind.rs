//! [`Kind`]: what a hold is (a lock, a semaphore's permit, a reader, a writer), and the tag
//! its leases carry in a store.

/// What a caller holds of a key: the whole of it, or a lease among several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An exclusive lock: the key holds its one owner's token.
    Lock,
    /// One of `permits` leases of a semaphore.
    Permit { permits: u32 },
    /// One reader's lease of a read/write lock.
    Read,
    /// The writer's lease of a read/write lock.
    Write,
}

impl Kind {
    /// The tag a lease of this kind carries in the store (`s3`, `r`, `w`), which tells a
    /// semaphore of 3 permits from one of 5, or from a read/write lock.
    pub(crate) fn tag(self) -> String {
        match self {
            Kind::Lock => "lock".to_owned(),
            Kind::Permit { permits } => format!("s{permits}"),
            Kind::Read => "r".to_owned(),
            Kind::Write => "w".to_owned(),
        }
    }

    /// The kind a tag names; `None` for a tag no kind writes.
    pub(crate) fn from_tag(tag: &str) -> Option<Kind> {
        match tag {
            "lock" => Some(Kind::Lock),
            "r" => Some(Kind::Read),
            "w" => Some(Kind::Write),
            t => {
                let permits = t.strip_prefix('s')?.parse().ok()?;
                (permits > 0).then_some(Kind::Permit { permits })
            }
        }
    }

    /// A lease's name in the store: its tag and its owner's token.
    pub(crate) fn member(self, token: &str) -> String {
        format!("{}:{token}", self.tag())
    }

    /// How many leases the key admits at once (0: no limit).
    pub(crate) fn limit(self) -> u32 {
        match self {
            Kind::Lock | Kind::Write => 1,
            Kind::Permit { permits } => permits,
            Kind::Read => 0,
        }
    }

    /// Whether a lease with `tag` can sit beside (or wait behind) leases of this kind.
    pub(crate) fn agrees_with(self, tag: &str) -> bool {
        match self {
            Kind::Read | Kind::Write => tag == "r" || tag == "w",
            other => other.tag() == tag,
        }
    }

    /// What a key held this way is, for errors: "a semaphore of 3 permits".
    pub(crate) fn describe(self) -> String {
        match self {
            Kind::Read | Kind::Write => "a read/write lock".to_owned(),
            Kind::Lock => "an exclusive lock".to_owned(),
            Kind::Permit { permits } => format!("a semaphore of {permits} permits"),
        }
    }
}

/// What a key is held as, when a request cannot share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeldAs {
    /// A kind the store named.
    Kind(Kind),
    /// Leases of a semaphore or a read/write lock; the store did not say which.
    Leases,
    /// A tag no kind writes (something else's data under the key).
    Unknown(String),
}

impl HeldAs {
    /// What a lease's tag in the store says the key is held as.
    pub(crate) fn from_tag(tag: &str) -> Self {
        match Kind::from_tag(tag) {
            Some(kind) => HeldAs::Kind(kind),
            None => HeldAs::Unknown(tag.to_owned()),
        }
    }

    /// For errors: "a semaphore of 3 permits".
    pub(crate) fn describe(&self) -> String {
        match self {
            HeldAs::Kind(kind) => kind.describe(),
            HeldAs::Leases => "a semaphore or read/write lock".to_owned(),
            HeldAs::Unknown(tag) => format!("something else (`{tag}`)"),
        }
    }
}
