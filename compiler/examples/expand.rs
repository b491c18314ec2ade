//! Print the code `#[weir::job]` generates for a file holding one job function:
//! `cargo run -p weir-compiler --example expand -- path/to/main.rs`.
fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: expand FILE.rs");
        std::process::exit(2);
    };
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!("error: cannot read {path}: {e}");
        std::process::exit(2)
    });
    let file: syn::File = syn::parse_str(&src).unwrap_or_else(|e| {
        eprintln!("error: {path} does not parse: {e}");
        std::process::exit(2)
    });
    let mut out = Vec::new();
    for item in file.items {
        if let syn::Item::Fn(mut f) = item.clone() {
            if let Some(pos) = f
                .attrs
                .iter()
                .position(|a| a.path().segments.last().is_some_and(|s| s.ident == "job"))
            {
                let attr = f.attrs.remove(pos);
                let args = match attr.meta {
                    syn::Meta::List(l) => l.tokens,
                    _ => Default::default(),
                };
                let c = weir_compiler::compile_job(args, quote::quote!(#f));
                out.push(
                    syn::parse2::<syn::File>(c.tokens)
                        .map(|f| prettyplease::unparse(&f))
                        .unwrap_or_else(|e| format!("/* {e} */")),
                );
                continue;
            }
        }
        out.push(prettyplease::unparse(&syn::File {
            shebang: None,
            attrs: vec![],
            items: vec![item],
        }));
    }
    println!("{}", out.join("\n"));
}
