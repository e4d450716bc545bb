//! The MySQL bench (written in a later commit).

fn main() {}
