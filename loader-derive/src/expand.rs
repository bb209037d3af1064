//! Code generation. Everything goes through `::burn_pretrain::__private` and sits in a
//! `const _: () = { ... };` so nothing the user imported (or did not) matters.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, parse_quote};

use crate::ast::Shape;
use crate::attr::container_attrs;

pub fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Vec::new();
    container_attrs(&input.attrs, &mut errors);
    let body = match &input.data {
        Data::Struct(data) => {
            let shape = Shape::from_fields(&data.fields, false, &mut errors);
            map_struct(&shape)
        }
        Data::Enum(data) => {
            let variants: Vec<_> = data
                .variants
                .iter()
                .map(|v| {
                    for attr in v.attrs.iter().filter(|a| a.path().is_ident("pretrain")) {
                        errors.push(syn::Error::new_spanned(
                            attr,
                            "#[pretrain(...)] belongs on fields, not on variants",
                        ));
                    }
                    let mut shape = Shape::from_fields(&v.fields, true, &mut errors);
                    // burn names the module a newtype variant holds by the variant
                    // (`VisionTransformer.blocks.0…` in burn-store's files and old burn's
                    // records): that is its name in burn's convention. PyTorch's sees through it.
                    if let [field] = shape.fields.as_mut_slice()
                        && !shape.named
                    {
                        field.field_name = v.ident.to_string();
                    }
                    (v.ident.clone(), shape)
                })
                .collect();
            map_enum(&variants)
        }
        Data::Union(u) => {
            errors.push(syn::Error::new(
                u.union_token.span,
                "Pretrainable cannot be derived for a union",
            ));
            quote!()
        }
    };

    let name = &input.ident;
    let mut generics = input.generics.clone();
    for param in generics.type_params_mut() {
        param
            .bounds
            .push(parse_quote!(::burn_pretrain::__private::Pretrainable));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    // On error: the messages, and an impl that does nothing, so that uses of the type do not
    // pile further errors on top.
    let body = if errors.is_empty() { body } else { quote!() };
    let errors = errors.iter().map(syn::Error::to_compile_error);
    quote! {
        #(#errors)*
        #[allow(non_snake_case, unused_variables, clippy::all)]
        const _: () = {
            impl #impl_generics ::burn_pretrain::__private::Pretrainable for #name #ty_generics #where_clause {
                fn map_pretrain(&mut self, __mapper: &mut ::burn_pretrain::__private::Mapper<'_>) {
                    #body
                }
            }
        };
    }
}

/// One mapping step per field: the field under its checkpoint name, or declared skipped.
fn map_fields(shape: &Shape) -> TokenStream {
    let steps = shape.fields.iter().filter_map(|f| {
        if f.skipped {
            let name = &f.field_name;
            return Some(quote!(__mapper.skipped(#name);));
        }
        let key = f.key.as_ref()?;
        let binding = &f.binding;
        let field_name = &f.field_name;
        Some(quote! {
            __mapper.child(#key, #field_name, #binding);
        })
    });
    quote!(#(#steps)*)
}

fn map_struct(shape: &Shape) -> TokenStream {
    let pattern = shape.pattern();
    let steps = map_fields(shape);
    quote! {
        let Self #pattern = self;
        #steps
    }
}

fn map_enum(variants: &[(syn::Ident, Shape)]) -> TokenStream {
    let arms = variants.iter().map(|(ident, shape)| {
        let pattern = shape.pattern();
        let steps = map_fields(shape);
        quote!(Self::#ident #pattern => { #steps })
    });
    quote! {
        match self {
            #(#arms)*
        }
    }
}
