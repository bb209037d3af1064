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
    let (walk, apply) = match &input.data {
        Data::Struct(data) => {
            let shape = Shape::from_fields(&data.fields, false, &mut errors);
            (walk_struct(&shape), apply_struct(&shape))
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
                    (
                        v.ident.clone(),
                        Shape::from_fields(&v.fields, true, &mut errors),
                    )
                })
                .collect();
            (walk_enum(&variants), apply_enum(&variants))
        }
        Data::Union(u) => {
            errors.push(syn::Error::new(
                u.union_token.span,
                "Pretrainable cannot be derived for a union",
            ));
            (quote!(), quote!(self))
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
    let (walk, apply) = if errors.is_empty() {
        (walk, apply)
    } else {
        (quote!(), quote!(self))
    };
    let errors = errors.iter().map(syn::Error::to_compile_error);
    quote! {
        #(#errors)*
        #[allow(non_snake_case, unused_variables, clippy::all)]
        const _: () = {
            impl #impl_generics ::burn_pretrain::__private::Pretrainable for #name #ty_generics #where_clause {
                fn walk_pretrain(&self, __walker: &mut ::burn_pretrain::__private::Walker) {
                    #walk
                }

                fn apply_pretrain(self, __applier: &mut ::burn_pretrain::__private::Applier) -> Self {
                    #apply
                }
            }
        };
    }
}

fn walk_fields(shape: &Shape) -> TokenStream {
    let steps = shape.fields.iter().filter_map(|f| {
        if f.skipped {
            let name = &f.field_name;
            return Some(quote!(__walker.skipped(#name);));
        }
        let key = f.key.as_ref()?;
        let binding = &f.binding;
        let field_name = &f.field_name;
        Some(quote! {
            __walker.field(#key, #field_name, |__walker| {
                ::burn_pretrain::__private::Pretrainable::walk_pretrain(#binding, __walker)
            });
        })
    });
    quote!(#(#steps)*)
}

fn rebuild(shape: &Shape, ctor: TokenStream) -> TokenStream {
    let values = shape.fields.iter().map(|f| {
        let binding = &f.binding;
        let field_name = &f.field_name;
        match &f.key {
            Some(key) => quote! {
                __applier.field(#key, #field_name, |__applier| {
                    ::burn_pretrain::__private::Pretrainable::apply_pretrain(#binding, __applier)
                })
            },
            None => quote!(#binding),
        }
    });
    if shape.unit {
        ctor
    } else if shape.named {
        let members = shape.fields.iter().map(|f| &f.member);
        quote!(#ctor { #(#members: #values),* })
    } else {
        quote!(#ctor ( #(#values),* ))
    }
}

fn walk_struct(shape: &Shape) -> TokenStream {
    let pattern = shape.pattern();
    let steps = walk_fields(shape);
    quote! {
        let Self #pattern = self;
        #steps
    }
}

fn apply_struct(shape: &Shape) -> TokenStream {
    let pattern = shape.pattern();
    let rebuilt = rebuild(shape, quote!(Self));
    quote! {
        let Self #pattern = self;
        #rebuilt
    }
}

fn walk_enum(variants: &[(syn::Ident, Shape)]) -> TokenStream {
    let arms = variants.iter().map(|(ident, shape)| {
        let pattern = shape.pattern();
        let steps = walk_fields(shape);
        quote!(Self::#ident #pattern => { #steps })
    });
    quote! {
        match self {
            #(#arms)*
        }
    }
}

fn apply_enum(variants: &[(syn::Ident, Shape)]) -> TokenStream {
    let arms = variants.iter().map(|(ident, shape)| {
        let pattern = shape.pattern();
        let rebuilt = rebuild(shape, quote!(Self::#ident));
        quote!(Self::#ident #pattern => #rebuilt,)
    });
    quote! {
        match self {
            #(#arms)*
        }
    }
}
