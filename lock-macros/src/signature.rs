//! Checks on the annotated fn, and the names its parameters bind.

use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat};

/// One parameter: the name it binds, or `None` for a destructuring pattern.
pub(crate) struct Param {
    pub(crate) name: Option<syn::Ident>,
    pub(crate) span: proc_macro2::Span,
}

/// The checked facts about the fn.
pub(crate) struct Signature {
    /// Every parameter in order, `self` first when there is one.
    pub(crate) params: Vec<Param>,
    /// Every name a key placeholder may start with (`self`, params, names bound in patterns).
    pub(crate) bound: Vec<String>,
}

pub(crate) fn check(item: &ItemFn) -> syn::Result<Signature> {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span,
            "`#[locked]` goes on an `async fn`: the lock is awaited; write `async fn`",
        ));
    }
    if let Some(c) = &sig.constness {
        return Err(syn::Error::new(
            c.span,
            "`#[locked]` cannot go on a `const fn`",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new(
            v.span(),
            "`#[locked]` cannot go on a variadic fn",
        ));
    }
    let mut params = Vec::new();
    let mut bound = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                let ident = syn::Ident::new("self", r.self_token.span);
                bound.push("self".to_owned());
                params.push(Param {
                    name: Some(ident),
                    span: r.span(),
                });
            }
            FnArg::Typed(pt) => {
                let name = match &*pt.pat {
                    Pat::Ident(pi) if pi.subpat.is_none() => Some(pi.ident.clone()),
                    _ => None,
                };
                collect_bindings(&pt.pat, &mut bound);
                params.push(Param {
                    name,
                    span: pt.pat.span(),
                });
            }
        }
    }
    Ok(Signature { params, bound })
}

fn collect_bindings(pat: &Pat, out: &mut Vec<String>) {
    match pat {
        Pat::Ident(pi) => {
            out.push(pi.ident.to_string());
            if let Some((_, sub)) = &pi.subpat {
                collect_bindings(sub, out);
            }
        }
        Pat::Tuple(t) => t.elems.iter().for_each(|p| collect_bindings(p, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|p| collect_bindings(p, out)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| collect_bindings(&f.pat, out)),
        Pat::Reference(r) => collect_bindings(&r.pat, out),
        Pat::Type(t) => collect_bindings(&t.pat, out),
        Pat::Paren(p) => collect_bindings(&p.pat, out),
        Pat::Slice(s) => s.elems.iter().for_each(|p| collect_bindings(p, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_collects_self_params_and_pattern_bindings() {
        let item: ItemFn = syn::parse_quote!(
            async fn f(&self, id: u64, (a, b): (u8, u8), Wrapper { inner }: Wrapper) {}
        );
        let sig = check(&item).unwrap();
        assert_eq!(sig.bound, ["self", "id", "a", "b", "inner"]);
        assert_eq!(sig.params.len(), 4);
        assert!(sig.params[2].name.is_none());
    }

    #[test]
    fn check_rejects_non_async() {
        let item: ItemFn = syn::parse_quote!(
            fn f() {}
        );
        assert!(
            check(&item)
                .err()
                .expect("an error")
                .to_string()
                .contains("write `async fn`")
        );
    }
}
