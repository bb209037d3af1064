//! A model of the input: the fields to walk, with their checkpoint names, checked.

use std::collections::HashMap;

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};
use syn::{Fields, spanned::Spanned};

use crate::attr::{FieldAttrs, field_attrs};

/// One field: how to reach it and what the checkpoint calls it.
pub struct Field {
    /// `self.<member>` for access; `0`, `1` for tuple fields.
    pub member: syn::Member,
    /// The binding used when destructuring.
    pub binding: Ident,
    /// The module's name for it.
    pub field_name: String,
    /// The checkpoint's name (empty when flattened); `None` when skipped.
    pub key: Option<String>,
    /// Set by `#[pretrain(skip)]` (not `#[module(skip)]`): checkpoint keys under the field's
    /// name are ignored rather than unexpected.
    pub skipped: bool,
}

/// The fields of a struct or of one enum variant.
pub struct Shape {
    pub fields: Vec<Field>,
    pub named: bool,
    pub unit: bool,
}

impl Shape {
    /// Read `fields`, collecting errors. `transparent_newtype` makes a single unnamed field
    /// sit at the parent's level (enum variants wrapping one module).
    pub fn from_fields(
        fields: &Fields,
        transparent_newtype: bool,
        errors: &mut Vec<syn::Error>,
    ) -> Self {
        let newtype =
            transparent_newtype && matches!(fields, Fields::Unnamed(f) if f.unnamed.len() == 1);
        let mut out = Vec::new();
        let mut seen: HashMap<String, (String, Span)> = HashMap::new();
        for (i, f) in fields.iter().enumerate() {
            let attrs: FieldAttrs = field_attrs(&f.attrs, errors);
            let (member, field_name, binding) = match &f.ident {
                Some(ident) => (
                    syn::Member::Named(ident.clone()),
                    ident.to_string(),
                    format_ident!("__field_{}", ident),
                ),
                None => (
                    syn::Member::Unnamed(syn::Index::from(i)),
                    i.to_string(),
                    format_ident!("__field_{}", i),
                ),
            };
            let key = if attrs.skip.is_some() || attrs.module_skip {
                None
            } else if let Some(rename) = &attrs.rename {
                Some(rename.value())
            } else if attrs.flatten.is_some() || newtype {
                Some(String::new())
            } else {
                Some(field_name.clone())
            };
            if let Some(key) = &key
                && !key.is_empty()
            {
                let span = attrs.rename.as_ref().map(|r| r.span()).unwrap_or(f.span());
                if let Some((other, _)) = seen.get(key) {
                    errors.push(syn::Error::new(
                        span,
                        format!("checkpoint name `{key}` is already used by field `{other}`"),
                    ));
                } else {
                    seen.insert(key.clone(), (field_name.clone(), span));
                }
            }
            out.push(Field {
                member,
                binding,
                skipped: attrs.skip.is_some(),
                field_name,
                key,
            });
        }
        Shape {
            fields: out,
            named: matches!(fields, Fields::Named(_)),
            unit: matches!(fields, Fields::Unit),
        }
    }

    /// `{ a: __field_a, .. }` / `(__field_0, ..)` / nothing.
    pub fn pattern(&self) -> TokenStream {
        let bindings = self.fields.iter().map(|f| &f.binding);
        if self.unit {
            quote!()
        } else if self.named {
            let members = self.fields.iter().map(|f| &f.member);
            quote!({ #(#members: #bindings),* })
        } else {
            quote!(( #(#bindings),* ))
        }
    }
}
