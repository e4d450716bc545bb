//! Key templates: `"order:{id}"`, `"user:{self.id}"`, `"{{literal}}"`, checked against the
//! function's parameters at compile time.

use syn::LitStr;

/// A parsed template: literal text around placeholders.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Template {
    /// One more literal than placeholders: `lits[0] p0 lits[1] p1 ... lits[n]`.
    pub(crate) lits: Vec<String>,
    /// Each placeholder as a path: `["self", "id"]`, `["req", "user_id"]`.
    pub(crate) places: Vec<Vec<String>>,
}

/// Parses and checks `lit` against `params` (the names a placeholder may start with).
pub(crate) fn parse(lit: &LitStr, params: &[String]) -> syn::Result<Template> {
    let template = parse_text(&lit.value()).map_err(|msg| syn::Error::new(lit.span(), msg))?;
    for place in &template.places {
        let root = &place[0];
        if !params.iter().any(|p| p == root) {
            let text = place.join(".");
            let mut msg =
                format!("unknown placeholder `{{{text}}}` in key: no parameter named `{root}`");
            if let Some(near) = crate::suggest::closest(root, params.iter().map(String::as_str)) {
                msg.push_str(&format!("; did you mean `{near}`?"));
            }
            if params.is_empty() {
                msg.push_str("; the function has no parameters to put in the key");
            } else {
                let list: Vec<String> = params.iter().map(|p| format!("`{p}`")).collect();
                msg.push_str(&format!(" (parameters: {})", list.join(", ")));
            }
            return Err(syn::Error::new(lit.span(), msg));
        }
    }
    Ok(template)
}

fn parse_text(text: &str) -> Result<Template, String> {
    let mut lits = Vec::new();
    let mut cur = String::new();
    let mut places = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                cur.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                cur.push('}');
            }
            '}' => return Err("unmatched `}` in key; write `}}` for a literal brace".to_owned()),
            '{' => {
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => inner.push(c),
                        None => {
                            return Err(format!(
                                "unclosed `{{{inner}` in key; close it with `}}`, or write `{{{{` for a literal brace"
                            ));
                        }
                    }
                }
                places.push(placeholder(&inner)?);
                lits.push(std::mem::take(&mut cur));
            }
            c => cur.push(c),
        }
    }
    lits.push(cur);
    if text.is_empty() {
        return Err("the key is empty; name the resource, e.g. `key = \"order:{id}\"`".to_owned());
    }
    Ok(Template { lits, places })
}

fn placeholder(inner: &str) -> Result<Vec<String>, String> {
    let trimmed = inner.trim();
    if trimmed.is_empty() {
        return Err("empty placeholder `{}` in key; name a parameter, e.g. `{id}`".to_owned());
    }
    if trimmed.contains(':') {
        return Err(format!(
            "format specs are not supported in keys: `{{{inner}}}`; placeholders are formatted with `Display`, write `{{{}}}`",
            trimmed.split(':').next().unwrap_or("").trim()
        ));
    }
    if trimmed.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "positional placeholder `{{{inner}}}` in key; name a parameter instead, e.g. `{{id}}`"
        ));
    }
    let parts: Vec<String> = trimmed.split('.').map(|p| p.trim().to_owned()).collect();
    let valid = parts.iter().enumerate().all(|(i, p)| {
        let mut cs = p.chars();
        match cs.next() {
            Some(c) if c.is_alphabetic() || c == '_' => cs.all(|c| c.is_alphanumeric() || c == '_'),
            Some(c) if i > 0 && c.is_ascii_digit() => cs.all(|c| c.is_ascii_digit()),
            _ => false,
        }
    });
    if !valid {
        return Err(format!(
            "placeholder `{{{inner}}}` in key is not a parameter or a field path; write `{{param}}` or `{{param.field}}`"
        ));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn lit(s: &str) -> LitStr {
        LitStr::new(s, proc_macro2::Span::call_site())
    }

    #[test]
    fn parse_plain_key_has_no_placeholders() {
        let t = parse(&lit("cron:daily"), &[]).unwrap();
        assert_eq!(t.lits, vec!["cron:daily"]);
        assert!(t.places.is_empty());
    }

    #[test]
    fn parse_placeholders_and_fields() {
        let t = parse(
            &lit("a:{id}:{self.user.id}:{p.0}"),
            &names(&["id", "self", "p"]),
        )
        .unwrap();
        assert_eq!(t.lits, vec!["a:", ":", ":", ""]);
        assert_eq!(
            t.places,
            vec![
                names(&["id"]),
                names(&["self", "user", "id"]),
                names(&["p", "0"])
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_text_never_panics(text in "[a-z{}:. 0-9_+?]{0,30}") {
            let _ = parse_text(&text);
        }

        #[test]
        fn parse_text_plain_text_is_one_literal(text in "[a-z:._0-9-]{1,30}") {
            let t = parse_text(&text).unwrap();
            proptest::prop_assert_eq!(t.lits, vec![text]);
            proptest::prop_assert!(t.places.is_empty());
        }
    }

    #[test]
    fn parse_escaped_braces_are_literal() {
        let t = parse(&lit("{{x}}:{id}"), &names(&["id"])).unwrap();
        assert_eq!(t.lits, vec!["{x}:", ""]);
    }

    #[test]
    fn parse_unknown_name_suggests_closest() {
        let err = parse(&lit("order:{ordr_id}"), &names(&["order_id", "qty"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown placeholder `{ordr_id}` in key: no parameter named `ordr_id`; did you mean `order_id`? (parameters: `order_id`, `qty`)"
        );
    }

    #[test]
    fn parse_rejects_bad_templates() {
        let cases = [
            ("a:{}", "empty placeholder"),
            ("a:{0}", "positional placeholder"),
            ("a:{id:?}", "format specs"),
            ("a:{id + 1}", "not a parameter or a field path"),
            ("a:{id", "unclosed"),
            ("a:}", "unmatched `}`"),
            ("", "the key is empty"),
        ];
        for (text, want) in cases {
            let err = parse(&lit(text), &names(&["id"])).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
