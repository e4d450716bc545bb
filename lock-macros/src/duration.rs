//! Duration literals (`"500ms"`, `"30s"`, `"2m"`, `"1h"`), parsed at compile time.

use std::time::Duration;

use syn::LitStr;

/// Parses `lit` as the value of argument `name` into whole milliseconds, or an error on the
/// literal that says what to write.
pub(crate) fn parse_ms(name: &str, lit: &LitStr) -> syn::Result<u64> {
    parse_text(name, &lit.value()).map_err(|msg| syn::Error::new(lit.span(), msg))
}

fn parse_text(name: &str, text: &str) -> Result<u64, String> {
    const HINT: &str = "write \"500ms\", \"30s\", \"2m\" or \"1h\"";
    let d: Duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid `{name}` {text:?}: {e}; {HINT}"))?;
    if d.is_zero() {
        return Err(format!(
            "`{name}` must be greater than zero, found {text:?}; {HINT}"
        ));
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(format!(
            "`{name}` {text:?} is not a whole number of milliseconds, which is what Redis counts in; {HINT}"
        ));
    }
    u64::try_from(d.as_millis()).map_err(|_| format!("`{name}` {text:?} is too large; {HINT}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_text_accepts_common_units() {
        assert_eq!(parse_text("ttl", "500ms"), Ok(500));
        assert_eq!(parse_text("ttl", "30s"), Ok(30_000));
        assert_eq!(parse_text("ttl", "2m"), Ok(120_000));
        assert_eq!(parse_text("ttl", "1h"), Ok(3_600_000));
        assert_eq!(parse_text("ttl", "1m 30s"), Ok(90_000));
    }

    #[test]
    fn parse_text_rejects_zero() {
        let err = parse_text("ttl", "0s").unwrap_err();
        assert!(err.starts_with("`ttl` must be greater than zero"), "{err}");
    }

    #[test]
    fn parse_text_rejects_sub_millisecond() {
        let err = parse_text("timeout", "1500us").unwrap_err();
        assert!(err.contains("whole number of milliseconds"), "{err}");
    }

    #[test]
    fn parse_text_rejects_garbage_with_hint() {
        for bad in ["30x", "", "s", "-1s", "thirty seconds"] {
            let err = parse_text("ttl", bad).unwrap_err();
            assert!(err.contains("write \"500ms\""), "{bad}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_text_of_formatted_duration_is_identity(ms in 1u64..10_000_000_000) {
            let text = humantime::format_duration(Duration::from_millis(ms)).to_string();
            proptest::prop_assert_eq!(parse_text("ttl", &text), Ok(ms));
        }

        #[test]
        fn parse_text_never_panics(text in ".{0,40}") {
            let _ = parse_text("ttl", &text);
        }
    }

    #[test]
    fn parse_text_round_trips_formatted_durations() {
        for ms in [1u64, 7, 999, 1000, 1001, 59_999, 3_600_000, 86_400_123] {
            let text = humantime::format_duration(Duration::from_millis(ms)).to_string();
            assert_eq!(parse_text("ttl", &text), Ok(ms), "{text}");
        }
    }
}
