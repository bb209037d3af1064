//! `#[pretrain(...)]` attributes: parsed with every error collected, each at its span.

use proc_macro2::Span;
use syn::{Attribute, LitStr, spanned::Spanned};

/// What the attributes of one field ask for.
#[derive(Default)]
pub struct FieldAttrs {
    pub rename: Option<LitStr>,
    pub skip: Option<Span>,
    pub flatten: Option<Span>,
    /// `#[module(skip)]`: burn does not treat it as a module, neither do we.
    pub module_skip: bool,
}

pub fn field_attrs(attrs: &[Attribute], errors: &mut Vec<syn::Error>) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    for attr in attrs {
        if attr.path().is_ident("module") {
            let _ = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("skip") {
                    out.module_skip = true;
                }
                Ok(())
            });
            continue;
        }
        if !attr.path().is_ident("pretrain") {
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                let value: LitStr = meta.value()?.parse()?;
                if out.rename.is_some() {
                    errors.push(syn::Error::new(meta.path.span(), "`rename` given twice"));
                } else if value.value().is_empty() {
                    errors.push(syn::Error::new(
                        value.span(),
                        "`rename` needs a non-empty name; use `flatten` to put the field's tensors at the parent's level",
                    ));
                } else if value.value().split('.').any(str::is_empty) {
                    errors.push(syn::Error::new(
                        value.span(),
                        "`rename` must not start or end with a dot or contain `..`",
                    ));
                } else {
                    out.rename = Some(value);
                }
            } else if meta.path.is_ident("skip") {
                if out.skip.is_some() {
                    errors.push(syn::Error::new(meta.path.span(), "`skip` given twice"));
                }
                out.skip = Some(meta.path.span());
            } else if meta.path.is_ident("flatten") {
                if out.flatten.is_some() {
                    errors.push(syn::Error::new(meta.path.span(), "`flatten` given twice"));
                }
                out.flatten = Some(meta.path.span());
            } else {
                let name = meta
                    .path
                    .get_ident()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "?".into());
                errors.push(syn::Error::new(
                    meta.path.span(),
                    format!(
                        "unknown pretrain attribute `{name}`; expected `rename = \"...\"`, `skip` or `flatten`"
                    ),
                ));
                // Consume a value if one follows, so parsing goes on.
                if meta.input.peek(syn::Token![=]) {
                    let _: syn::Expr = meta.value()?.parse()?;
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            errors.push(e);
        }
    }
    if let Some(skip) = out.skip {
        if let Some(rename) = &out.rename {
            errors.push(syn::Error::new(
                rename.span(),
                "`rename` has no effect on a `skip` field",
            ));
        }
        if out.flatten.is_some() {
            errors.push(syn::Error::new(
                skip,
                "`skip` and `flatten` cannot be combined",
            ));
        }
    }
    if let (Some(flatten), Some(_)) = (out.flatten, &out.rename) {
        errors.push(syn::Error::new(
            flatten,
            "`flatten` and `rename` cannot be combined",
        ));
    }
    out
}

/// The type itself takes no `#[pretrain]` attribute.
pub fn container_attrs(attrs: &[Attribute], errors: &mut Vec<syn::Error>) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("pretrain")) {
        errors.push(syn::Error::new_spanned(
            attr,
            "#[pretrain(...)] belongs on fields, not on the type",
        ));
    }
}
