//! Generate the job: one timely vertex per chain, whose logic is straight-line code over one
//! record (no boxing, no dynamic dispatch, no buffer between chained operators), the plan as
//! embedded JSON, and `fn main`.

use crate::chain::Chains;
use crate::lower::Graph;
use crate::plan::{self, OpKind};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

/// Most outputs a vertex may have (the runtime's `Ports` tuples).
pub const MAX_PORTS: usize = 8;

/// Build the serializable plan.
pub fn job_plan(g: &Graph, c: &Chains) -> plan::JobPlan {
    plan::JobPlan {
        name: g.name.clone(),
        max_parallelism: g.max_parallelism,
        default_parallelism: g.default_parallelism,
        operators: g
            .ops
            .iter()
            .map(|o| plan::Operator {
                id: o.id,
                kind: o.kind,
                name: o.resolved_name.clone(),
                parallelism: o
                    .parallelism
                    .map_or(plan::Par::Default, |(p, _)| plan::Par::Fixed(p)),
                slot_sharing_group: o.resolved_group.clone(),
                chaining: if o.disable_chaining.is_some() {
                    plan::Chaining::Disabled
                } else if o.start_new_chain.is_some() {
                    plan::Chaining::NewChain
                } else {
                    plan::Chaining::Default
                },
                location: o.location.clone(),
                detail: o.detail.clone(),
            })
            .collect(),
        edges: g
            .edges
            .iter()
            .enumerate()
            .map(|(i, e)| plan::Edge {
                from: e.from,
                to: e.to,
                kind: if e.broadcast {
                    plan::EdgeKind::Broadcast
                } else if e.key.is_some() {
                    plan::EdgeKind::Hash
                } else {
                    plan::EdgeKind::Unkeyed
                },
                chained: c.chained_edge[i],
            })
            .collect(),
        vertices: c
            .vertices
            .iter()
            .enumerate()
            .map(|(id, ops)| {
                let head = &g.ops[ops[0]];
                plan::Vertex {
                    id,
                    operators: ops.clone(),
                    parallelism: head
                        .parallelism
                        .map_or(plan::Par::Default, |(p, _)| plan::Par::Fixed(p)),
                    slot_sharing_group: head.resolved_group.clone(),
                }
            })
            .collect(),
        args: g
            .args
            .iter()
            .map(|(n, d)| plan::ArgSpec {
                name: n.clone(),
                has_default: *d,
            })
            .collect(),
        checkpoint_interval_ms: g.checkpoint_interval_ms,
    }
}

fn w(op: usize) -> syn::Ident {
    format_ident!("__w{}", op)
}
fn f(op: usize) -> syn::Ident {
    format_ident!("__f{}", op)
}
fn r(op: usize) -> syn::Ident {
    format_ident!("__r{}", op)
}
fn s(op: usize) -> syn::Ident {
    format_ident!("__s{}", op)
}
fn k(op: usize) -> syn::Ident {
    format_ident!("__k{}", op)
}
fn ck(op: usize) -> syn::Ident {
    format_ident!("__ck{}", op)
}
fn kw(op: usize) -> syn::Ident {
    format_ident!("__kw{}", op)
}

struct VertexGen<'a> {
    g: &'a Graph,
    c: &'a Chains,
    /// Operators of this vertex with an output leaving it, in port order.
    ports: Vec<usize>,
}

impl VertexGen<'_> {
    fn children(&self, op: usize) -> Vec<usize> {
        self.g.ops[op]
            .outputs
            .iter()
            .filter(|&&e| self.c.chained_edge[e])
            .map(|&e| self.g.edges[e].to)
            .filter(|&c| !matches!(self.g.ops[c].kind, OpKind::LateData | OpKind::SideOutput))
            .collect()
    }

    fn late_child(&self, op: usize) -> Option<usize> {
        self.g.ops[op]
            .outputs
            .iter()
            .filter(|&&e| self.c.chained_edge[e])
            .map(|&e| self.g.edges[e].to)
            .find(|&c| self.g.ops[c].kind == OpKind::LateData)
    }

    /// The side outputs read from a process function: drain each into its continuation.
    fn side_drains(&self, op: usize) -> TokenStream {
        let fv = f(op);
        let mut out = TokenStream::new();
        for c in self.g.ops[op]
            .outputs
            .iter()
            .filter(|&&e| self.c.chained_edge[e])
            .map(|&e| self.g.edges[e].to)
        {
            if self.g.ops[c].kind != OpKind::SideOutput {
                continue;
            }
            let tag = self.g.ops[c].arg.as_ref();
            let rc = r(c);
            let rest = self.after(c);
            out.extend(quote!(#fv.drain_side(&#tag, &mut |__ts: ::weir::__private::EventTime, #rc| { #rest ::core::result::Result::Ok(()) })?;));
        }
        out.extend(quote!(#fv.discard_unread_sides();));
        out
    }

    /// Port indices fed by `op` or anything chained below it.
    fn ports_below(&self, op: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = vec![op];
        while let Some(x) = stack.pop() {
            if let Some(p) = self.ports.iter().position(|&p| p == x) {
                out.push(p);
            }
            stack.extend(
                self.g.ops[x]
                    .outputs
                    .iter()
                    .filter(|&&e| self.c.chained_edge[e])
                    .map(|&e| self.g.edges[e].to),
            );
        }
        out.sort_unstable();
        out
    }

    /// Emit an assigner's mark `m` to every port below `op`.
    fn marks(&self, op: usize, m: TokenStream) -> TokenStream {
        let ports: Vec<syn::Index> = self
            .ports_below(op)
            .into_iter()
            .map(syn::Index::from)
            .collect();
        quote!(#(__ports.#ports.mark(__inst, #m);)*)
    }

    /// The main continuation of a window operator: a closure over its result.
    fn window_main(&self, op: usize) -> TokenStream {
        let rv = r(op);
        let rest = self.after(op);
        quote!(&mut |__ts: ::weir::__private::EventTime, #rv| { #rest ::core::result::Result::Ok(()) })
    }

    /// Code run with the output of `op` bound to `__r{op}`.
    fn after(&self, op: usize) -> TokenStream {
        let rv = r(op);
        let children = self.children(op);
        let mut out = TokenStream::new();
        if let Some(port) = self.ports.iter().position(|&p| p == op) {
            let idx = syn::Index::from(port);
            if children.is_empty() {
                out.extend(quote!(__ports.#idx.push(__ts, #rv);));
                return out;
            }
            out.extend(quote!(__ports.#idx.push(__ts, ::core::clone::Clone::clone(&#rv));));
        }
        let n = children.len();
        for (i, child) in children.into_iter().enumerate() {
            let input = if i + 1 == n {
                quote!(#rv)
            } else {
                quote!(::core::clone::Clone::clone(&#rv))
            };
            let body = self.apply(child, input);
            out.extend(quote!({ #body }));
        }
        out
    }

    /// Code applying `op` to `input`, then everything after it.
    fn apply(&self, op: usize, input: TokenStream) -> TokenStream {
        let o = &self.g.ops[op];
        let (fv, rv) = (f(op), r(op));
        let span = o.span;
        let rest = self.after(op);
        match o.kind {
            OpKind::Map => quote_spanned!(span=> let #rv = (#fv)(#input); #rest),
            OpKind::Filter => quote_spanned!(span=> let #rv = #input; if (#fv)(&#rv) { #rest }),
            // Through `IntoIterator` explicitly: a closure returning an `Option` is fine
            // (a bare `for` over it trips rustc's `for_loops_over_fallibles` lint).
            OpKind::FlatMap => {
                quote_spanned!(span=> for #rv in ::core::iter::IntoIterator::into_iter((#fv)(#input)) { #rest })
            }
            OpKind::Reduce => quote_spanned!(span=> let #rv = #fv.apply(#input); #rest),
            OpKind::Sink => {
                let kwv = kw(op);
                quote_spanned!(span=> ::weir::__private::SinkWriter::write(&mut #kwv, #input)?;)
            }
            OpKind::Watermarks => {
                let m = self.marks(op, quote!(__m));
                quote_spanned!(span=> let #rv = #input; let __ts = #fv.stamp(&#rv); #rest if let ::core::option::Option::Some(__m) = #fv.take_event_mark() { #m })
            }
            OpKind::Window => {
                let main = self.window_main(op);
                let late = match self.late_child(op) {
                    Some(l) => {
                        let lr = r(l);
                        let rest = self.after(l);
                        quote!(&mut |__ts: ::weir::__private::EventTime, #lr| { #rest ::core::result::Result::Ok(()) })
                    }
                    None => quote!(&mut ::weir::__private::drop_late),
                };
                quote_spanned!(span=> #fv.on_record(__ts, #input, #main, #late)?;)
            }
            OpKind::Process | OpKind::CoProcess | OpKind::BroadcastProcess => {
                let main = self.window_main(op);
                let sides = self.side_drains(op);
                quote_spanned!(span=> #fv.on_record(__ts, #input, #main)?; #sides)
            }
            OpKind::IntervalJoin | OpKind::UpdatingAggregate | OpKind::UpdatingJoin => {
                let main = self.window_main(op);
                quote_spanned!(span=> #fv.on_record(__ts, #input, #main)?;)
            }
            OpKind::Source | OpKind::LateData | OpKind::SideOutput => quote!(),
        }
    }
}

/// Generate the whole expansion.
pub fn generate(g: &Graph, c: &Chains, plan_json: &str) -> TokenStream {
    let mut body = TokenStream::new();
    let env = &g.env_ident;
    for stmt in &g.plain {
        body.extend(quote!(#stmt));
    }
    for (vid, ops) in c.vertices.iter().enumerate() {
        body.extend(vertex(g, c, vid, ops));
    }
    let fn_ident = &g.fn_ident;
    let vis = &g.vis;
    let main = if g.emit_main {
        quote! {
            fn main() -> ::std::process::ExitCode {
                ::weir::__private::cli::main(#fn_ident(), ::weir::BUILD_INFO)
            }
        }
    } else {
        quote!()
    };
    quote! {
        /// The compiled job: its plan and its dataflow (generated by `#[weir::job]`).
        #vis fn #fn_ident() -> ::weir::__private::Job {
            #[allow(unused_variables, unused_mut, clippy::all, non_snake_case)]
            fn __weir_build<'s>(scope: ::weir::__private::Scope<'s, ::weir::__private::Epoch>, __ctx: &::weir::__private::WorkerCtx) {
                #[allow(unused_imports)]
                use ::weir::__private::{CkNo as _, CkYes as _};
                let #env: &::weir::__private::Env = __ctx.env();
                #body
            }
            ::weir::__private::Job::from_generated(
                #plan_json,
                __weir_build,
                ::weir::__private::JobMeta { crate_name: ::core::env!("CARGO_PKG_NAME"), crate_version: ::core::env!("CARGO_PKG_VERSION") },
            )
        }
        #main
    }
}

fn vertex(g: &Graph, c: &Chains, vid: usize, ops: &[usize]) -> TokenStream {
    let head = &g.ops[ops[0]];
    let ports: Vec<usize> = ops
        .iter()
        .copied()
        .filter(|&o| g.ops[o].outputs.iter().any(|&e| !c.chained_edge[e]))
        .collect();
    let vg = VertexGen { g, c, ports };
    let mut out = TokenStream::new();
    let ordered = ops.iter().any(|&o| g.ops[o].kind.is_keyed());
    // Processing-time windows are written with the `*ProcessingTime` assigners.
    let ticks = ops.iter().any(|&o| {
        matches!(
            g.ops[o].kind,
            OpKind::Process | OpKind::CoProcess | OpKind::BroadcastProcess
        ) || g.ops[o]
            .window
            .as_ref()
            .is_some_and(|w| crate::lower::is_processing_time(&w.assigner))
    });
    let head_id = head.id;
    // Chains with state or a sink take part in checkpoints (sources do in `source_vertex`).
    let checkpointed = ops.iter().any(|&o| {
        g.ops[o].kind.is_keyed() || matches!(g.ops[o].kind, OpKind::Sink | OpKind::Source)
    });
    let spec = quote!(::weir::__private::VertexSpec { id: #vid, head: #head_id, ordered: #ordered, ticks: #ticks, checkpointed: #checkpointed });

    // The witness of the vertex's input type, and the key selector of hash inputs.
    let input_w = format_ident!("__win{}", vid);
    let key_v = format_ident!("__key{}", vid);
    let mut key_expr = None;
    let two_input = head.inputs.iter().any(|&e| g.edges[e].right);
    let key_left = format_ident!("__keyl{}", vid);
    let (win_l, win_r) = (
        format_ident!("__winl{}", vid),
        format_ident!("__winr{}", vid),
    );
    if two_input {
        let lfirst = head.inputs.iter().map(|&e| &g.edges[e]).find(|e| !e.right);
        let rfirst = head.inputs.iter().map(|&e| &g.edges[e]).find(|e| e.right);
        let (Some(lf), Some(rf)) = (lfirst, rfirst) else {
            return syn::Error::new(
                head.span,
                "weir-compiler bug: a two-input operator without both inputs",
            )
            .to_compile_error();
        };
        let (lw, rw) = (w(lf.from), w(rf.from));
        let span = head.span;
        out.extend(quote!(let #win_l = #lw; let #win_r = #rw; let #input_w = ::weir::__private::two_witness(#win_l, #win_r);));
        let lkey = lf.key.map(|k| (&g.keys[k].expr, g.keys[k].span));
        let rkey = rf.key.map(|k| (&g.keys[k].expr, g.keys[k].span));
        if let Some((ke, kspan)) = lkey {
            out.extend(
                quote_spanned!(kspan=> let #key_left = ::weir::__private::key_by(#win_l, #ke);),
            );
        }
        match (lkey.is_some(), rkey, rf.broadcast) {
            (true, _, true) => {
                out.extend(quote_spanned!(span=> let #key_v = ::weir::__private::broadcast_keys(::core::clone::Clone::clone(&#key_left));));
                key_expr = Some(key_v.clone());
            }
            (true, Some((ke, kspan)), false) => {
                let key_right = format_ident!("__keyr{}", vid);
                out.extend(quote_spanned!(kspan=> let #key_right = ::weir::__private::key_by(#win_r, #ke);));
                // Both sides must have the same key type: a mismatch is reported here.
                out.extend(quote_spanned!(span=> let #key_v = ::weir::__private::two_keys(::core::clone::Clone::clone(&#key_left), #key_right);));
                key_expr = Some(key_v.clone());
            }
            _ => {}
        }
    } else if head.kind != OpKind::Source {
        let first = &g.edges[head.inputs[0]];
        let pw = w(first.from);
        out.extend(quote!(let #input_w = #pw;));
        if let Some(kidx) = first.key {
            let ke = &g.keys[kidx].expr;
            let span = g.keys[kidx].span;
            out.extend(
                quote_spanned!(span=> let #key_v = ::weir::__private::key_by(#input_w, #ke);),
            );
            key_expr = Some(key_v.clone());
        }
    }

    // Evaluate the user's closures, sources and sinks, threading type witnesses.
    let mut opens = TokenStream::new();
    let mut epoch_hooks = TokenStream::new();
    let mut end_hooks = TokenStream::new();
    let mut flush_hooks = TokenStream::new();
    let mut watermark_hooks = TokenStream::new();
    let mut tick_hooks = TokenStream::new();
    for &op in ops {
        let o = &g.ops[op];
        let span = o.span;
        let (wv, fv) = (w(op), f(op));
        let inw = if op == head_id {
            input_w.clone()
        } else {
            w(g.edges[o.inputs[0]].from)
        };
        let arg = o.arg.as_ref();
        let name = &o.resolved_name;
        match o.kind {
            OpKind::Source => {
                let src = format_ident!("__src{}", vid);
                out.extend(quote_spanned!(span=> let (#src, #wv) = ::weir::__private::source_witness(#arg);));
            }
            OpKind::Map => out.extend(quote_spanned!(span=> let (mut #fv, #wv) = ::weir::__private::map(#inw, #arg);)),
            OpKind::Filter => out.extend(quote_spanned!(span=> let (mut #fv, #wv) = ::weir::__private::filter(#inw, #arg);)),
            OpKind::FlatMap => out.extend(quote_spanned!(span=> let (mut #fv, #wv) = ::weir::__private::flat_map(#inw, #arg);)),
            OpKind::Reduce => {
                out.extend(quote_spanned!(span=> let (mut #fv, #wv) = ::weir::__private::reduce(#inw, &#key_v, #arg);));
                let ck = ck(op);
                let state = quote!((&mut ::weir::__private::Ck(&mut #fv)).ck());
                opens.extend(quote!(let mut #ck = ::weir::__private::participate(__vctx, #name, #state)?;));
                epoch_hooks.extend(quote!(::weir::__private::ck_epoch_done(&mut #ck, __e, #state)?;));
                end_hooks.extend(quote!(::weir::__private::ck_end(&mut #ck, #state)?;));
            }
            OpKind::Watermarks => {
                let extract = o.arg2.as_ref();
                out.extend(quote_spanned!(span=> let (mut #fv, #wv) = ::weir::__private::watermarks(#inw, #arg, #extract);));
                let m = vg.marks(op, quote!(#fv.end()));
                let mwm = vg.marks(op, quote!(::weir::__private::Mark::Watermark(__wm)));
                let flush = vg.marks(op, quote!(__m));
                flush_hooks.extend(quote!(if let ::core::option::Option::Some(__m) = #fv.flush() { #flush }));
                end_hooks.extend(quote!(#m));
                // Upstream watermarks stop at an assigner, except the end of input.
                watermark_hooks.extend(quote!(if __wm == ::weir::__private::EventTime::MAX { #mwm }));
            }
            OpKind::Window => {
                let Some(ws) = &o.window else { continue };
                let assigner = &ws.assigner;
                let lateness = match &ws.lateness {
                    Some(l) => quote!(#l),
                    None => quote!(::core::time::Duration::ZERO),
                };
                let ctor = match ws.func {
                    crate::lower::WinFn::Reduce => quote!(window_reduce),
                    crate::lower::WinFn::Aggregate => quote!(window_aggregate),
                    crate::lower::WinFn::Process => quote!(window_process),
                    crate::lower::WinFn::Join => quote!(window_join),
                };
                out.extend(quote_spanned!(span=> let (mut #fv, #wv) = ::weir::__private::#ctor(#inw, &#key_v, #assigner, #lateness, #arg);));
                let ck = ck(op);
                let state = quote!((&mut ::weir::__private::Ck(&mut #fv)).ck());
                opens.extend(quote!(let mut #ck = ::weir::__private::participate_or_refuse(__vctx, #name, #state, "window state whose accumulator type is not serializable (derive Serialize and Deserialize on it)")?;));
                epoch_hooks.extend(quote!(::weir::__private::ck_epoch_done(&mut #ck, __e, #state)?;));
                let main = vg.window_main(op);
                watermark_hooks.extend(quote_spanned!(span=> #fv.on_watermark(__wm, #main)?;));
                tick_hooks.extend(quote_spanned!(span=> #fv.on_tick(__now, #main)?;));
                end_hooks.extend(quote_spanned!(span=> #fv.on_end(#main)?;));
                let read = vg.late_child(op).is_some();
                end_hooks.extend(quote!(#fv.finish(#name, #read);));
                end_hooks.extend(quote!(::weir::__private::ck_end(&mut #ck, #state)?;));
            }
            OpKind::Process | OpKind::CoProcess | OpKind::BroadcastProcess => {
                let call = match o.kind {
                    OpKind::CoProcess if o.event_time => quote!(::weir::__private::co_process(#inw, &#key_v, #arg)),
                    OpKind::CoProcess => quote!(::weir::__private::co_process_processing_time(#inw, &#key_v, #arg)),
                    OpKind::BroadcastProcess => quote!(::weir::__private::broadcast_process(#inw, &#key_left, #arg)),
                    _ if o.event_time => quote!(::weir::__private::keyed_process(#inw, &#key_v, #arg)),
                    _ => quote!(::weir::__private::keyed_process_processing_time(#inw, &#key_v, #arg)),
                };
                out.extend(quote_spanned!(span=> let (mut #fv, #wv) = #call;));
                let main = vg.window_main(op);
                let sides = vg.side_drains(op);
                watermark_hooks.extend(quote_spanned!(span=> #fv.on_watermark(__wm, #main)?; #sides));
                let main = vg.window_main(op);
                let sides = vg.side_drains(op);
                tick_hooks.extend(quote_spanned!(span=> #fv.on_tick(__now, #main)?; #sides));
            }
            OpKind::SideOutput => {
                out.extend(quote_spanned!(span=> let #wv = ::weir::__private::side_witness(&#arg);));
            }
            OpKind::UpdatingAggregate => {
                out.extend(quote_spanned!(span=> let (mut #fv, #wv) = ::weir::__private::updating_aggregate(#inw, &#key_v, #arg);));
            }
            OpKind::UpdatingJoin => {
                out.extend(quote_spanned!(span=> let (mut #fv, #wv) = ::weir::__private::updating_join(#inw, &#key_v, #arg);));
            }
            OpKind::IntervalJoin => {
                let bounds = o.arg2.as_ref();
                out.extend(quote_spanned!(span=> let (mut #fv, #wv) = { let (__lo, __hi) = #bounds; ::weir::__private::interval_join(#inw, &#key_v, __lo, __hi, #arg) };));
                let main = vg.window_main(op);
                watermark_hooks.extend(quote_spanned!(span=> #fv.on_watermark(__wm, #main)?;));
            }
            OpKind::LateData => {
                // Late records are the window's input records; the window is the head.
                out.extend(quote!(let #wv = #input_w;));
            }
            OpKind::Sink => {
                let (kv, kwv) = (k(op), kw(op));
                out.extend(quote_spanned!(span=> let #kv = #arg; let #wv = #inw;));
                let ck = ck(op);
                opens.extend(quote_spanned!(span=> let mut #kwv = ::weir::__private::open_sink(#inw, &#kv, __vctx, #name)?;));
                opens.extend(quote!(let mut #ck = ::weir::__private::participate_sink(#inw, __vctx, #name, &mut #kwv)?;));
                epoch_hooks.extend(quote!(::weir::__private::sink_epoch_ck(#wv, &mut #ck, &mut #kwv, __e)?;));
                end_hooks.extend(quote!(::weir::__private::sink_close_ck(#wv, &mut #ck, &mut #kwv)?;));
            }
        }
        // Keyed operators other than reduce and windows (handled above) take part in
        // checkpoints when their types allow; those that cannot refuse to start with them.
        let refuse = match o.kind {
            OpKind::Process | OpKind::CoProcess | OpKind::IntervalJoin | OpKind::UpdatingJoin => {
                Some("state that cannot be checkpointed")
            }
            OpKind::BroadcastProcess => Some(
                "broadcast state whose type is not serializable (derive Serialize and Deserialize on it, with #[serde(crate = \"weir::serde\")])",
            ),
            OpKind::UpdatingAggregate => Some(
                "an updating aggregate whose accumulator or result type is not serializable (derive Serialize and Deserialize on them, with #[serde(crate = \"weir::serde\")])",
            ),
            _ => None,
        };
        if let Some(what) = refuse {
            let ck = ck(op);
            let state = quote!((&mut ::weir::__private::Ck(&mut #fv)).ck());
            opens.extend(quote!(let mut #ck = ::weir::__private::participate_or_refuse(__vctx, #name, #state, #what)?;));
            epoch_hooks.extend(quote!(::weir::__private::ck_epoch_done(&mut #ck, __e, #state)?;));
            end_hooks.extend(quote!(::weir::__private::ck_end(&mut #ck, #state)?;));
        }
    }

    let ports_v = format_ident!("__ports{}", vid);
    let pw_v = format_ident!("__pw{}", vid);
    // Ports below a watermark assigner carry the assigner's watermarks.
    let own: Vec<usize> = ops
        .iter()
        .filter(|&&o| g.ops[o].kind == OpKind::Watermarks)
        .flat_map(|&o| vg.ports_below(o))
        .collect();
    let port_exprs: Vec<TokenStream> = vg
        .ports
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let wv = w(p);
            if own.contains(&i) {
                quote!(::weir::__private::Port::new(#wv).own_watermarks(),)
            } else {
                quote!(::weir::__private::Port::new(#wv),)
            }
        })
        .collect();
    let stream_pats: Vec<TokenStream> = vg
        .ports
        .iter()
        .map(|&p| {
            let sv = s(p);
            quote!(#sv,)
        })
        .collect();
    if vg.ports.len() > MAX_PORTS {
        return syn::Error::new(head.span, format!("this chain has {} outputs leaving it; weir supports at most {MAX_PORTS}: add `.disable_chaining()` somewhere to split it", vg.ports.len())).to_compile_error();
    }
    out.extend(quote!(let #ports_v = (#(#port_exprs)*); let #pw_v = ::weir::__private::witness_of(&#ports_v);));

    let rec_arm = if head.kind == OpKind::Source {
        let rh = r(head_id);
        let rest = vg.after(head_id);
        quote!(::weir::__private::Event::Rec(__ts, #rh) => { #rest })
    } else {
        let body = vg.apply(head_id, quote!(__input));
        quote!(::weir::__private::Event::Rec(__ts, __input) => { #body })
    };
    let chain_in = if head.kind == OpKind::Source {
        w(head_id)
    } else {
        input_w.clone()
    };
    let ctor = quote! {
        move |__vctx: &::weir::__private::VertexCtx| {
            let __inst = __vctx.instance;
            #opens
            ::core::result::Result::Ok(::weir::__private::chain(#chain_in, #pw_v, move |__ev, __ports| {
                match __ev {
                    #rec_arm
                    ::weir::__private::Event::Watermark(__wm) => { #watermark_hooks }
                    ::weir::__private::Event::Flush => { #flush_hooks }
                    ::weir::__private::Event::Tick(__now) => { #tick_hooks }
                    ::weir::__private::Event::EpochDone(__e) => { #epoch_hooks }
                    ::weir::__private::Event::End => { #end_hooks }
                }
                ::core::result::Result::Ok(())
            }))
        }
    };
    let call = if head.kind == OpKind::Source {
        let src = format_ident!("__src{}", vid);
        let name = &head.resolved_name;
        quote!(::weir::__private::source_vertex(scope, __ctx, #spec, #name, #src, #ports_v, #ctor))
    } else {
        let mut inputs = Vec::new();
        for &e in &head.inputs {
            let from = g.edges[e].from;
            let sv = s(from);
            if !two_input {
                inputs.push(quote!(::weir::__private::edge(&#sv, #from)));
            } else if g.edges[e].right {
                inputs.push(
                    quote!(::weir::__private::edge(&::weir::__private::right(&#sv, #win_l), #from)),
                );
            } else {
                inputs.push(
                    quote!(::weir::__private::edge(&::weir::__private::left(&#sv, #win_r), #from)),
                );
            }
        }
        let key = match &key_expr {
            Some(kv) => quote!(::core::option::Option::Some(::core::clone::Clone::clone(&#kv))),
            None => quote!(::weir::__private::no_key(#input_w)),
        };
        let span = head
            .inputs
            .first()
            .and_then(|&e| g.edges[e].key)
            .map_or(head.span, |k| g.keys[k].span);
        quote_spanned!(span=> ::weir::__private::unary_vertex(scope, __ctx, #spec, ::std::vec![#(#inputs),*], #key, #ports_v, #ctor))
    };
    out.extend(quote!(let (#(#stream_pats)*) = #call;));
    out
}

/// What to emit instead of the job when it has errors: the errors, and stubs so that no
/// unrelated error follows.
pub fn error_stub(g_fn: &syn::Ident, vis: &syn::Visibility, emit_main: bool) -> TokenStream {
    let main = if emit_main {
        quote!(
            fn main() {}
        )
    } else {
        quote!()
    };
    let _ = Span::call_site();
    quote! {
        #[allow(dead_code)]
        #vis fn #g_fn() -> ::weir::__private::Job { ::core::unreachable!() }
        #main
    }
}
