//! Parse a `#[weir::job]` function into the logical graph: operators, edges and the plain
//! `let` statements, keeping every span.
//!
//! The accepted subset (documented in README): the body is a sequence of statements, each
//! either `let NAME = CHAIN;`, `CHAIN;`, or `let PATTERN = EXPR;` for a plain value that no
//! stream appears in. A CHAIN is a method chain whose root is `env.source(...)` or a stream
//! variable. Everything else (loops, `if`, macros, items, calls on streams) is an error.

use crate::diag::{did_you_mean, Diagnostics};
use crate::plan::{OpKind, DEFAULT_MAX_PARALLELISM, MAX_MAX_PARALLELISM};
use crate::symbol::*;
use proc_macro2::Span;
use std::collections::HashMap;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, ExprMethodCall, Ident, ItemFn, Lit, Pat, Stmt};

/// A `key_by` selector.
pub struct KeyBy {
    /// The user's closure.
    pub expr: Expr,
    /// Span of `key_by`.
    pub span: Span,
}

/// What a window operator does with a window's records.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WinFn {
    /// `.reduce(f)`
    Reduce,
    /// `.aggregate(a)`
    Aggregate,
    /// `.process(f)`
    Process,
    /// `.apply(f)` of a window join
    Join,
}

/// A window operator's settings.
pub struct WindowSpec {
    /// The assigner expression (`Tumbling::minutes(5)`).
    pub assigner: Expr,
    /// `allowed_lateness(d)`.
    pub lateness: Option<Expr>,
    /// The window function kind.
    pub func: WinFn,
    /// Span of `window`.
    #[allow(dead_code)]
    pub span: Span,
}

/// A logical operator with everything the user wrote about it.
pub struct Op {
    /// Index in `Graph::ops`.
    pub id: usize,
    /// Kind.
    pub kind: OpKind,
    /// Span of the method name (`map` in `.map(...)`).
    pub span: Span,
    /// The user's argument (closure, source or sink expression).
    pub arg: Option<Expr>,
    /// A second argument (the timestamp extractor of `watermarks`).
    pub arg2: Option<Expr>,
    /// For window operators.
    pub window: Option<WindowSpec>,
    /// Whether this window operator is `window_all` (parallelism 1).
    pub window_all: bool,
    /// For process functions: whether the input has watermarks (event-time timers allowed).
    pub event_time: bool,
    /// `name("...")`.
    pub name: Option<(String, Span)>,
    /// The final, unique name.
    pub resolved_name: String,
    /// `parallelism(n)`.
    pub parallelism: Option<(u32, Span)>,
    /// `disable_chaining()`.
    pub disable_chaining: Option<Span>,
    /// `start_new_chain()`.
    pub start_new_chain: Option<Span>,
    /// `chain_with_previous()`.
    pub chain_with_previous: Option<Span>,
    /// `slot_sharing_group("...")`.
    pub group: Option<(String, Span)>,
    /// The group after inheritance.
    pub resolved_group: String,
    /// Input edges.
    pub inputs: Vec<usize>,
    /// Output edges.
    pub outputs: Vec<usize>,
    /// `file:line:column` of the method name.
    pub location: String,
    /// Short description for `explain`.
    pub detail: String,
}

/// A logical edge.
pub struct LEdge {
    /// Producer.
    pub from: usize,
    /// Consumer.
    pub to: usize,
    /// The `key_by` selector, for hash edges.
    pub key: Option<usize>,
    /// The second input of a two-input operator.
    pub right: bool,
    /// A `.broadcast()` edge.
    pub broadcast: bool,
}

/// The whole job as written.
pub struct Graph {
    /// Job name.
    pub name: String,
    /// The user's function name (kept for the generated function).
    pub fn_ident: Ident,
    /// Its visibility.
    pub vis: syn::Visibility,
    /// The name of the `env` parameter.
    pub env_ident: Ident,
    /// Number of key groups.
    pub max_parallelism: u32,
    /// Job default parallelism.
    pub default_parallelism: Option<u32>,
    /// Whether to generate `fn main`.
    pub emit_main: bool,
    /// Checkpoint interval in ms (`checkpoint_interval = "10s"`).
    pub checkpoint_interval_ms: Option<u64>,
    /// Operators in program (= topological) order.
    pub ops: Vec<Op>,
    /// Edges.
    pub edges: Vec<LEdge>,
    /// `key_by` selectors.
    pub keys: Vec<KeyBy>,
    /// Plain `let` statements, in order.
    pub plain: Vec<Stmt>,
    /// Arguments read with `env.arg`/`env.arg_or`: name and whether it has a default.
    pub args: Vec<(String, bool)>,
}

#[derive(Clone)]
struct StreamVal {
    producers: Vec<usize>,
    key: Option<usize>,
    /// Whether every record has an event time and watermarks flow (a `watermarks` upstream).
    watermarked: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TwoKind {
    Connect,
    Join,
    IntervalJoin,
    UpdatingJoin,
}

struct TwoVal {
    kind: TwoKind,
    left: StreamVal,
    right: StreamVal,
    right_broadcast: bool,
    bounds: Option<(Expr, Expr)>,
}

struct WindowedVal {
    /// For window joins: the two sides.
    join: Option<(StreamVal, StreamVal)>,
    event_time: bool,
    stream: StreamVal,
    assigner: Expr,
    lateness: Option<Expr>,
    span: Span,
    all: bool,
}

enum Value {
    Stream(StreamVal),
    Two(TwoVal),
    Windowed(WindowedVal),
    /// Ended in a sink.
    Sunk,
}

struct StreamVar {
    val: StreamVal,
    span: Span,
    used: bool,
}

/// Job attribute arguments.
pub struct JobAttr {
    name: Option<String>,
    max_parallelism: Option<(u32, Span)>,
    parallelism: Option<(u32, Span)>,
    main: bool,
    checkpoint_interval: Option<u64>,
}

/// Parse `#[weir::job(name = "...", max_parallelism = N, parallelism = N, main = bool)]`.
pub fn parse_attr(attr: proc_macro2::TokenStream, cx: &Diagnostics) -> JobAttr {
    let mut out = JobAttr {
        name: None,
        max_parallelism: None,
        parallelism: None,
        main: true,
        checkpoint_interval: None,
    };
    let parser = syn::meta::parser(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        match key.as_str() {
            "name" => {
                let s: syn::LitStr = meta.value()?.parse()?;
                if s.value().trim().is_empty() {
                    cx.error(s.span(), "the job name must not be empty");
                }
                out.name = Some(s.value());
            }
            "max_parallelism" | "parallelism" => {
                let lit: syn::LitInt = meta.value()?.parse()?;
                let v: u32 = lit.base10_parse()?;
                if key == "max_parallelism" {
                    out.max_parallelism = Some((v, lit.span()));
                } else {
                    out.parallelism = Some((v, lit.span()));
                }
            }
            "main" => {
                let b: syn::LitBool = meta.value()?.parse()?;
                out.main = b.value;
            }
            "checkpoint_interval" => {
                let s: syn::LitStr = meta.value()?.parse()?;
                match crate::plan::parse_duration_ms(&s.value()) {
                    Ok(ms) => out.checkpoint_interval = Some(ms),
                    Err(e) => cx.error(s.span(), format!("checkpoint_interval: {e}")),
                }
            }
            _ => {
                let hint = did_you_mean(
                    &key,
                    &[
                        "name",
                        "max_parallelism",
                        "parallelism",
                        "main",
                        "checkpoint_interval",
                    ],
                )
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
                return Err(meta.error(format!("unknown job setting `{key}`: expected `name`, `max_parallelism`, `parallelism`, `checkpoint_interval` or `main`{hint}")));
            }
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, attr) {
        cx.error(e.span(), e);
    }
    out
}

/// Lower the job function into a [`Graph`], pushing every error found on the way.
pub fn lower(attr: JobAttr, f: &ItemFn, cx: &Diagnostics) -> Graph {
    let sig = &f.sig;
    if let Some(a) = &sig.asyncness {
        cx.error(a.span, "a weir job function cannot be `async`: the pipeline is compiled into a dataflow, not run");
    }
    if !sig.generics.params.is_empty() {
        cx.error(sig.generics.span(), "a weir job function cannot be generic");
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        cx.error(
            ty.span(),
            "a weir job function returns nothing: remove the return type",
        );
    }
    let env_ident = match sig.inputs.iter().collect::<Vec<_>>().as_slice() {
        [syn::FnArg::Typed(pt)] => match &*pt.pat {
            Pat::Ident(pi) => pi.ident.clone(),
            other => {
                cx.error(
                    other.span(),
                    "the job function's parameter must be a plain name, as in `env: &mut Env`",
                );
                Ident::new("env", other.span())
            }
        },
        _ => {
            cx.error(
                sig.inputs
                    .span()
                    .join(sig.ident.span())
                    .unwrap_or(sig.ident.span()),
                "a weir job function takes exactly one parameter: `env: &mut Env`",
            );
            Ident::new("env", sig.ident.span())
        }
    };

    let max_parallelism = match attr.max_parallelism {
        Some((v, span)) if v == 0 || v > MAX_MAX_PARALLELISM => {
            cx.error(
                span,
                format!("max_parallelism must be between 1 and {MAX_MAX_PARALLELISM}, got {v}"),
            );
            DEFAULT_MAX_PARALLELISM
        }
        Some((v, _)) => v,
        None => DEFAULT_MAX_PARALLELISM,
    };
    let default_parallelism = match attr.parallelism {
        Some((v, span)) if v == 0 || v > max_parallelism => {
            cx.error(span, format!("the job's parallelism must be between 1 and max_parallelism ({max_parallelism}), got {v}"));
            None
        }
        Some((v, _)) => Some(v),
        None => None,
    };

    let mut l = Lowerer {
        cx,
        broadcast_pending: false,
        env: env_ident.clone(),
        graph: Graph {
            name: attr.name.unwrap_or_else(|| sig.ident.to_string()),
            fn_ident: sig.ident.clone(),
            vis: f.vis.clone(),
            env_ident,
            max_parallelism,
            default_parallelism,
            emit_main: attr.main,
            checkpoint_interval_ms: attr.checkpoint_interval,
            ops: Vec::new(),
            edges: Vec::new(),
            keys: Vec::new(),
            plain: Vec::new(),
            args: Vec::new(),
        },
        vars: HashMap::new(),
    };
    for stmt in &f.block.stmts {
        l.stmt(stmt);
    }
    l.finish_vars(None);
    let mut graph = l.graph;
    if !graph.ops.iter().any(|o| o.kind == OpKind::Source) {
        cx.error(
            sig.ident.span(),
            "this job has no source: start a stream with `env.source(...)`",
        );
    }
    if !graph.ops.iter().any(|o| o.kind == OpKind::Sink) {
        cx.error(
            sig.ident.span(),
            "this job has no sink: end a stream with `.sink(...)`",
        );
    }
    resolve_names(&mut graph);
    graph
}

struct Lowerer<'a> {
    cx: &'a Diagnostics,
    /// Set by `.broadcast()`, read by the `connect` that takes the stream.
    broadcast_pending: bool,
    env: Ident,
    graph: Graph,
    vars: HashMap<String, StreamVar>,
}

fn flatten(expr: &Expr) -> (&Expr, Vec<&ExprMethodCall>) {
    let mut calls = Vec::new();
    let mut cur = expr;
    while let Expr::MethodCall(mc) = cur {
        calls.push(mc);
        cur = &mc.receiver;
    }
    calls.reverse();
    (cur, calls)
}

fn root_ident(e: &Expr) -> Option<&Ident> {
    match e {
        Expr::Path(p) if p.qself.is_none() => p.path.get_ident(),
        _ => None,
    }
}

fn location(span: Span) -> String {
    let start = span.start();
    let file = span.file();
    if file.is_empty() {
        format!("{}:{}", start.line, start.column + 1)
    } else {
        format!("{file}:{}:{}", start.line, start.column + 1)
    }
}

/// A compact, readable rendering of an expression (formatted by prettyplease, then joined
/// on one line). Not `Span::source_text`: in a real proc-macro build it yields only the
/// first token of an expression.
fn describe(e: &Expr) -> String {
    let file: syn::File = syn::parse_quote!(fn f() { #e });
    let pretty = prettyplease::unparse(&file);
    let body: Vec<&str> = pretty
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let text = match body.as_slice() {
        [_, inner @ .., _] => inner.join(" "),
        _ => quote::quote!(#e).to_string(),
    };
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 80 {
        format!("{}…", one_line.chars().take(79).collect::<String>())
    } else {
        one_line
    }
}

impl<'a> Lowerer<'a> {
    fn is_stream_expr(&self, e: &Expr) -> bool {
        let (root, calls) = flatten(e);
        match root_ident(root) {
            Some(id) if *id == self.env => calls.first().is_some_and(|c| c.method == SOURCE),
            Some(id) => self.vars.contains_key(&id.to_string()),
            None => false,
        }
    }

    fn stmt(&mut self, stmt: &Stmt) {
        match stmt {
            Stmt::Local(local) => {
                let Some(init) = &local.init else {
                    self.cx.error(
                        local.span(),
                        "a `let` in a weir pipeline needs a value: `let name = ...;`",
                    );
                    return;
                };
                if init.diverge.is_some() {
                    self.cx.error(
                        local.span(),
                        "`let ... else` is not allowed in a weir pipeline",
                    );
                    return;
                }
                if self.is_stream_expr(&init.expr) {
                    let ident = match &local.pat {
                        Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                            pi.ident.clone()
                        }
                        Pat::Type(pt) => {
                            self.cx.error(
                                pt.ty.span(),
                                "stream variables take no type annotation: write `let name = ...;`",
                            );
                            return;
                        }
                        other => {
                            self.cx.error(
                                other.span(),
                                "bind a stream to a plain name: `let name = ...;`",
                            );
                            return;
                        }
                    };
                    let value = self.chain(&init.expr);
                    if let Some(Value::Windowed(w)) = &value {
                        self.cx.error(w.span, "a windowed stream needs its window function before it can be bound: `.window(...).reduce(...)`");
                    }
                    if let Some(Value::Stream(val)) = value {
                        self.finish_vars(Some(&ident.to_string()));
                        self.vars.insert(
                            ident.to_string(),
                            StreamVar {
                                val,
                                span: ident.span(),
                                used: false,
                            },
                        );
                    }
                } else {
                    self.plain_expr(&init.expr);
                    self.graph.plain.push(stmt.clone());
                }
            }
            Stmt::Expr(e, _) => {
                if self.is_stream_expr(e) {
                    if let Some(Value::Stream(_) | Value::Windowed(_) | Value::Two(_)) =
                        self.chain(e)
                    {
                        let (_, calls) = flatten(e);
                        let span = calls.last().map(|c| c.method.span()).unwrap_or(e.span());
                        self.cx.error(span, "this stream goes nowhere: end it with `.sink(...)`, or bind it with `let` and use it");
                    }
                } else {
                    self.not_allowed(e.span(), describe_kind(e));
                }
            }
            Stmt::Item(item) => self.not_allowed(item.span(), "an item (fn, struct, use, …)"),
            Stmt::Macro(m) => self.not_allowed(m.span(), "a macro call"),
        }
    }

    fn not_allowed(&self, span: Span, what: &str) {
        self.cx.error(
            span,
            format!(
                "{what} is not allowed in a weir pipeline: the body holds only `let` bindings and method chains on `{}` or stream variables (the pipeline is compiled, not run); move other code into a function you call from an operator's closure",
                self.env
            ),
        );
    }

    /// Report stream variables that are about to go out of use: all of them at the end, or
    /// the one being shadowed.
    fn finish_vars(&mut self, shadowed: Option<&str>) {
        let names: Vec<String> = match shadowed {
            Some(n) => self
                .vars
                .keys()
                .filter(|k| k.as_str() == n)
                .cloned()
                .collect(),
            None => self.vars.keys().cloned().collect(),
        };
        let mut unused: Vec<(Span, String)> = Vec::new();
        for n in names {
            if let Some(v) = self.vars.remove(&n) {
                if !v.used {
                    unused.push((v.span, n));
                }
            }
        }
        unused.sort_by_key(|(s, _)| (s.start().line, s.start().column));
        for (span, n) in unused {
            self.cx.error(span, format!("stream `{n}` goes nowhere: use it in a chain that ends with `.sink(...)`, or remove it"));
        }
    }

    /// Scan a plain expression: it must not mention streams; collect `env.arg` names.
    fn plain_expr(&mut self, e: &Expr) {
        let mut v = ExprScan {
            env: &self.env,
            vars: &self.vars,
            cx: self.cx,
            args: Vec::new(),
        };
        v.visit_expr(e);
        let args = v.args;
        self.add_args(args);
    }

    fn add_args(&mut self, args: Vec<(String, bool)>) {
        for (name, has_default) in args {
            match self.graph.args.iter_mut().find(|(n, _)| *n == name) {
                // Required anywhere means required.
                Some((_, d)) => *d = *d && has_default,
                None => self.graph.args.push((name, has_default)),
            }
        }
    }

    fn user_arg(&mut self, mc: &ExprMethodCall, what: &str) -> Option<Expr> {
        if mc.args.len() != 1 {
            self.cx.error(
                mc.method.span(),
                format!("`{}` takes exactly one argument: {what}", mc.method),
            );
            return None;
        }
        let e = mc.args[0].clone();
        self.plain_expr(&e);
        Some(e)
    }

    fn new_op(&mut self, kind: OpKind, mc: &ExprMethodCall, arg: Option<Expr>) -> usize {
        let id = self.graph.ops.len();
        let detail = arg.as_ref().map(describe).unwrap_or_default();
        self.graph.ops.push(Op {
            id,
            kind,
            span: mc.method.span(),
            arg,
            arg2: None,
            window: None,
            window_all: false,
            event_time: false,
            name: None,
            resolved_name: String::new(),
            parallelism: None,
            disable_chaining: None,
            start_new_chain: None,
            chain_with_previous: None,
            group: None,
            resolved_group: String::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            location: location(mc.method.span()),
            detail,
        });
        id
    }

    fn connect_two(
        &mut self,
        left: &StreamVal,
        right: &StreamVal,
        right_broadcast: bool,
        to: usize,
    ) {
        self.connect(left, to);
        for &p in &right.producers {
            let e = self.graph.edges.len();
            self.graph.edges.push(LEdge {
                from: p,
                to,
                key: right.key,
                right: true,
                broadcast: right_broadcast,
            });
            self.graph.ops[p].outputs.push(e);
            self.graph.ops[to].inputs.push(e);
        }
    }

    fn connect(&mut self, input: &StreamVal, to: usize) {
        for &p in &input.producers {
            let e = self.graph.edges.len();
            self.graph.edges.push(LEdge {
                from: p,
                to,
                key: input.key,
                right: false,
                broadcast: false,
            });
            self.graph.ops[p].outputs.push(e);
            self.graph.ops[to].inputs.push(e);
        }
    }

    /// Evaluate a stream chain.
    fn chain(&mut self, e: &Expr) -> Option<Value> {
        let (root, calls) = flatten(e);
        let root_id = root_ident(root)?.clone();
        let mut calls = calls.into_iter();
        let mut cur: Value;
        let mut last_op: Option<usize> = None;
        if root_id == self.env {
            let mc = calls.next()?;
            let arg = self.user_arg(mc, "the source, such as `FileSource::text_lines(path)`")?;
            let id = self.new_op(OpKind::Source, mc, Some(arg));
            last_op = Some(id);
            cur = Value::Stream(StreamVal {
                producers: vec![id],
                key: None,
                watermarked: false,
            });
        } else {
            let name = root_id.to_string();
            let var = self.vars.get_mut(&name)?;
            var.used = true;
            cur = Value::Stream(var.val.clone());
        }

        for mc in calls {
            let method = mc.method.to_string();
            let span = mc.method.span();
            if let Some(t) = &mc.turbofish {
                self.cx
                    .error(t.span(), format!("`{method}` takes no type arguments here"));
            }
            // Settings of the last operator.
            if SETTINGS.contains(&method.as_str()) {
                match last_op {
                    Some(op) => self.setting(op, mc),
                    None => self.cx.error(
                        span,
                        format!("`{method}` sets a property of an operator, but it follows `key_by`/`union`, which are not operators: move it after the operator it is meant for"),
                    ),
                }
                continue;
            }
            if method == ALLOWED_LATENESS {
                match &mut cur {
                    Value::Windowed(w) => {
                        if mc.args.len() != 1 {
                            self.cx.error(span, "`allowed_lateness` takes one `Duration`, such as `allowed_lateness(Duration::from_secs(60))`");
                        } else if !w.event_time {
                            self.cx.error(span, "`allowed_lateness` applies to event-time windows only: processing-time and count windows have no late records; remove it");
                        } else if w.lateness.is_some() {
                            self.cx.error(span, "`allowed_lateness` is set twice on this window: keep one");
                        } else {
                            let e = mc.args[0].clone();
                            self.plain_expr(&e);
                            w.lateness = Some(e);
                        }
                    }
                    _ => self.cx.error(span, "`allowed_lateness` applies to a window: `.window(...).allowed_lateness(d).reduce(...)`"),
                }
                continue;
            }
            if let Value::Windowed(w) = &cur {
                let func = match method.as_str() {
                    APPLY if w.join.is_some() => WinFn::Join,
                    REDUCE if w.join.is_none() => WinFn::Reduce,
                    AGGREGATE if w.join.is_none() => WinFn::Aggregate,
                    PROCESS if w.join.is_none() => WinFn::Process,
                    _ if w.join.is_some() => {
                        self.cx.error(span, format!("a windowed join ends with `.apply(|left, right| ...)`, not `.{method}(...)`"));
                        return None;
                    }
                    _ => {
                        self.cx.error(span, format!("after `.window(...)` comes the window function: `.reduce(f)`, `.aggregate(aggregator)` or `.process(f)`, not `.{method}(...)`"));
                        return None;
                    }
                };
                let what = match func {
                    WinFn::Reduce => "a closure combining two records",
                    WinFn::Aggregate => "an `Aggregator`",
                    WinFn::Process => "a closure `|key, window, records| outputs`",
                    WinFn::Join => "a closure `|left, right| output` applied to every pair",
                };
                let arg = self.user_arg(mc, what)?;
                let id = self.new_op(OpKind::Window, mc, Some(arg));
                let stream = w.stream.clone();
                let lateness = w
                    .lateness
                    .as_ref()
                    .map(|l| format!(", allowed lateness {}", describe(l)))
                    .unwrap_or_default();
                let detail = format!(
                    "{}{lateness}, {method} {}",
                    describe(&w.assigner),
                    self.graph.ops[id].detail
                );
                self.graph.ops[id].detail = detail;
                self.graph.ops[id].window = Some(WindowSpec {
                    assigner: w.assigner.clone(),
                    lateness: w.lateness.clone(),
                    func,
                    span: w.span,
                });
                if w.all {
                    self.graph.ops[id].parallelism = Some((1, w.span));
                    self.graph.ops[id].window_all = true;
                }
                match &w.join {
                    Some((l, r)) => {
                        let (l, r) = (l.clone(), r.clone());
                        self.connect_two(&l, &r, false, id)
                    }
                    None => self.connect(&stream, id),
                }
                last_op = Some(id);
                cur = Value::Stream(StreamVal {
                    producers: vec![id],
                    key: None,
                    watermarked: stream.watermarked,
                });
                continue;
            }
            if let Value::Two(t) = &mut cur {
                match (t.kind, method.as_str()) {
                    (TwoKind::IntervalJoin, BETWEEN) => {
                        if mc.args.len() != 2 {
                            self.cx.error(span, "`between` takes the lower and upper bound in milliseconds relative to the left record, such as `.between(-2_000, 1_000)`");
                            return None;
                        }
                        let (lo, hi) = (mc.args[0].clone(), mc.args[1].clone());
                        self.plain_expr(&lo);
                        self.plain_expr(&hi);
                        t.bounds = Some((lo, hi));
                        continue;
                    }
                    (TwoKind::Connect, PROCESS) | (TwoKind::IntervalJoin, PROCESS) => {
                        let kind = match t.kind {
                            TwoKind::Connect if t.right_broadcast => OpKind::BroadcastProcess,
                            TwoKind::Connect => OpKind::CoProcess,
                            _ => OpKind::IntervalJoin,
                        };
                        if kind == OpKind::IntervalJoin && t.bounds.is_none() {
                            self.cx.error(span, "an interval join needs its bounds: `.interval_join(other).between(lower_ms, upper_ms).process(|l, r| ...)`");
                            return None;
                        }
                        let arg = self.user_arg(mc, "the function")?;
                        let id = self.new_op(kind, mc, Some(arg));
                        let watermarked = t.left.watermarked && t.right.watermarked;
                        self.graph.ops[id].event_time = watermarked;
                        if let Some((lo, hi)) = &t.bounds {
                            self.graph.ops[id].arg2 = Some(syn::parse_quote!((#lo, #hi)));
                        }
                        if kind == OpKind::IntervalJoin && !watermarked {
                            self.cx.error(span, "an interval join works in event time: both inputs need `.watermarks(...)` upstream");
                        }
                        let (l, r, b) = (t.left.clone(), t.right.clone(), t.right_broadcast);
                        self.connect_two(&l, &r, b, id);
                        last_op = Some(id);
                        cur = Value::Stream(StreamVal {
                            producers: vec![id],
                            key: None,
                            watermarked,
                        });
                        continue;
                    }
                    (TwoKind::UpdatingJoin, APPLY) => {
                        let arg = self.user_arg(
                            mc,
                            "a closure `|left, right| output` applied to every matching pair",
                        )?;
                        let id = self.new_op(OpKind::UpdatingJoin, mc, Some(arg));
                        let watermarked = t.left.watermarked && t.right.watermarked;
                        let (l, r) = (t.left.clone(), t.right.clone());
                        self.connect_two(&l, &r, false, id);
                        last_op = Some(id);
                        cur = Value::Stream(StreamVal {
                            producers: vec![id],
                            key: None,
                            watermarked,
                        });
                        continue;
                    }
                    (TwoKind::Join, WINDOW) => {
                        let arg =
                            self.user_arg(mc, "a window assigner such as `Tumbling::seconds(10)`")?;
                        check_window_size(&arg, self.cx);
                        let event_time = !is_processing_time(&arg) && !is_count_window(&arg);
                        let watermarked = t.left.watermarked && t.right.watermarked;
                        if event_time && !watermarked {
                            self.cx.error(span, "an event-time window join needs watermarks on both inputs: add `.watermarks(...)` upstream of each");
                        }
                        let stream = StreamVal {
                            producers: Vec::new(),
                            key: t.left.key,
                            watermarked,
                        };
                        cur = Value::Windowed(WindowedVal {
                            join: Some((t.left.clone(), t.right.clone())),
                            event_time,
                            stream,
                            assigner: arg,
                            lateness: None,
                            span,
                            all: false,
                        });
                        continue;
                    }
                    _ => {
                        let next = match t.kind {
                            TwoKind::Connect => "`.process(f)`",
                            TwoKind::Join => "`.window(assigner).apply(f)`",
                            TwoKind::IntervalJoin => "`.between(lower_ms, upper_ms).process(f)`",
                            TwoKind::UpdatingJoin => "`.apply(|left, right| output)`",
                        };
                        self.cx.error(
                            span,
                            format!("`.{method}(...)` cannot follow this; continue with {next}"),
                        );
                        return None;
                    }
                }
            }
            let stream = match &cur {
                Value::Stream(s) => s.clone(),
                Value::Windowed(_) | Value::Two(_) => return None,
                Value::Sunk => {
                    self.cx.error(span, format!("`.{method}(...)` cannot follow `.sink(...)`: a sink ends the stream; only settings such as `.parallelism(n)` or `.name(\"...\")` may follow it"));
                    return None;
                }
            };
            match method.as_str() {
                MAP | FILTER | FLAT_MAP => {
                    let kind = match method.as_str() {
                        MAP => OpKind::Map,
                        FILTER => OpKind::Filter,
                        _ => OpKind::FlatMap,
                    };
                    let arg = self.user_arg(mc, "a closure")?;
                    let id = self.new_op(kind, mc, Some(arg));
                    self.connect(&stream, id);
                    last_op = Some(id);
                    cur = Value::Stream(StreamVal {
                        producers: vec![id],
                        key: None,
                        watermarked: stream.watermarked,
                    });
                }
                WATERMARKS => {
                    if mc.args.len() != 2 {
                        self.cx.error(span, "`watermarks` takes a strategy and a timestamp extractor: `.watermarks(BoundedOutOfOrderness::seconds(5), |r| r.event_time)`");
                        return None;
                    }
                    let (strategy, extract) = (mc.args[0].clone(), mc.args[1].clone());
                    self.plain_expr(&strategy);
                    self.plain_expr(&extract);
                    let id = self.new_op(OpKind::Watermarks, mc, Some(strategy));
                    self.graph.ops[id].detail = format!(
                        "{}, timestamps {}",
                        self.graph.ops[id].detail,
                        describe(&extract)
                    );
                    self.graph.ops[id].arg2 = Some(extract);
                    self.connect(&stream, id);
                    last_op = Some(id);
                    cur = Value::Stream(StreamVal {
                        producers: vec![id],
                        key: None,
                        watermarked: true,
                    });
                }
                WINDOW | WINDOW_ALL => {
                    let all = method == WINDOW_ALL;
                    let arg =
                        self.user_arg(mc, "a window assigner such as `Tumbling::minutes(5)`")?;
                    check_window_size(&arg, self.cx);
                    let mut stream = stream;
                    if all {
                        if stream.key.is_some() {
                            self.cx.error(span, "`window_all` windows the whole stream; on a keyed stream use `.window(...)`");
                        }
                        let k = self.graph.keys.len();
                        self.graph.keys.push(KeyBy {
                            expr: syn::parse_quote_spanned!(span=> |_| ()),
                            span,
                        });
                        stream.key = Some(k);
                    } else if stream.key.is_none() {
                        self.cx.error(span, "`window` needs a keyed stream: call `.key_by(|r| ...)` before it, or use `.window_all(...)` for the whole stream");
                    }
                    let event_time = !is_processing_time(&arg) && !is_count_window(&arg);
                    if event_time && !stream.watermarked {
                        self.cx.error(
                            span,
                            "event-time windows need watermarks: add `.watermarks(BoundedOutOfOrderness::seconds(5), |r| r.event_time)` upstream, after the source",
                        );
                    }
                    last_op = None;
                    cur = Value::Windowed(WindowedVal {
                        join: None,
                        stream,
                        assigner: arg,
                        lateness: None,
                        span,
                        all,
                        event_time,
                    });
                }
                LATE_DATA => {
                    if !mc.args.is_empty() {
                        self.cx
                            .error(mc.args.span(), "`late_data()` takes no arguments");
                    }
                    let window_op = match stream.producers.as_slice() {
                        [p] if self.graph.ops[*p].kind == OpKind::Window => Some(*p),
                        _ => None,
                    };
                    let Some(w) = window_op else {
                        self.cx.error(span, "`late_data()` reads the records a window dropped as late, but this stream does not come straight from a window function (`.window(...).reduce(...)` and friends): nothing writes this side output");
                        return None;
                    };
                    let id = self.new_op(OpKind::LateData, mc, None);
                    self.graph.ops[id].detail = format!(
                        "side output: records later than the allowed lateness of `{}`",
                        self.graph.ops[w].location
                    );
                    self.connect(
                        &StreamVal {
                            producers: vec![w],
                            key: None,
                            watermarked: stream.watermarked,
                        },
                        id,
                    );
                    last_op = Some(id);
                    cur = Value::Stream(StreamVal {
                        producers: vec![id],
                        key: None,
                        watermarked: stream.watermarked,
                    });
                }
                PROCESS => {
                    let arg = self.user_arg(mc, "a `KeyedProcessFunction`")?;
                    if stream.key.is_none() {
                        self.cx.error(span, "`process` runs a keyed process function: call `.key_by(|r| ...)` before it (or `.window(...)` before it for a process-window function); for stateless work use `map`/`flat_map`");
                    }
                    let id = self.new_op(OpKind::Process, mc, Some(arg));
                    self.graph.ops[id].event_time = stream.watermarked;
                    self.connect(&stream, id);
                    last_op = Some(id);
                    cur = Value::Stream(StreamVal {
                        producers: vec![id],
                        key: None,
                        watermarked: stream.watermarked,
                    });
                }
                SIDE_OUTPUT => {
                    let arg = self.user_arg(mc, "the `OutputTag` of the side output")?;
                    let from = match stream.producers.as_slice() {
                        [p] if matches!(
                            self.graph.ops[*p].kind,
                            OpKind::Process | OpKind::CoProcess | OpKind::BroadcastProcess
                        ) =>
                        {
                            Some(*p)
                        }
                        _ => None,
                    };
                    let Some(p) = from else {
                        self.cx.error(span, "`side_output(TAG)` reads what a keyed process function writes with `ctx.output(&TAG, ...)`, but this stream does not come straight from `.process(...)`: nothing writes this side output");
                        return None;
                    };
                    let id = self.new_op(OpKind::SideOutput, mc, Some(arg));
                    self.graph.ops[id].detail = format!(
                        "side output {} of `{}`",
                        self.graph.ops[id].detail, self.graph.ops[p].location
                    );
                    self.connect(
                        &StreamVal {
                            producers: vec![p],
                            key: None,
                            watermarked: stream.watermarked,
                        },
                        id,
                    );
                    last_op = Some(id);
                    cur = Value::Stream(StreamVal {
                        producers: vec![id],
                        key: None,
                        watermarked: stream.watermarked,
                    });
                }
                AGGREGATE => {
                    self.cx.error(span, format!("`{method}` is a window function: call `.window(...)` (or `.window_all(...)`) before it"));
                    return None;
                }
                BROADCAST => {
                    if !mc.args.is_empty() {
                        self.cx
                            .error(mc.args.span(), "`broadcast()` takes no arguments");
                    }
                    last_op = None;
                    cur = Value::Stream(StreamVal {
                        producers: stream.producers,
                        key: None,
                        watermarked: stream.watermarked,
                    });
                    self.broadcast_pending = true;
                }
                UPDATING_AGGREGATE => {
                    let arg = self.user_arg(mc, "a `RetractingAggregator`")?;
                    if stream.key.is_none() {
                        self.cx.error(span, "`updating_aggregate` aggregates per key: call `.key_by(|change| ...)` before it");
                    }
                    let id = self.new_op(OpKind::UpdatingAggregate, mc, Some(arg));
                    self.connect(&stream, id);
                    last_op = Some(id);
                    cur = Value::Stream(StreamVal {
                        producers: vec![id],
                        key: None,
                        watermarked: stream.watermarked,
                    });
                }
                CONNECT | JOIN | INTERVAL_JOIN | UPDATING_JOIN => {
                    if mc.args.len() != 1 || !self.is_stream_expr(&mc.args[0]) {
                        self.cx.error(
                            span,
                            format!("`{method}` takes one other stream: `a.{method}(b)`"),
                        );
                        return None;
                    }
                    self.broadcast_pending = false;
                    let other = match self.chain(&mc.args[0]) {
                        Some(Value::Stream(s)) => s,
                        _ => {
                            self.cx
                                .error(mc.args[0].span(), format!("`{method}` takes a stream"));
                            return None;
                        }
                    };
                    let right_broadcast = std::mem::take(&mut self.broadcast_pending);
                    if stream.key.is_none() {
                        self.cx.error(span, format!("`{method}` needs a keyed stream on the left: call `.key_by(|r| ...)` before it"));
                    }
                    if right_broadcast && method != CONNECT {
                        self.cx
                            .error(mc.args[0].span(), "only `connect` takes a broadcast stream");
                    } else if !right_broadcast && other.key.is_none() {
                        self.cx.error(mc.args[0].span(), format!("the stream given to `{method}` must be keyed too (`.key_by(...)`, with the same key type) or, for `connect`, broadcast (`.broadcast()`)"));
                    }
                    let kind = match method.as_str() {
                        CONNECT => TwoKind::Connect,
                        JOIN => TwoKind::Join,
                        UPDATING_JOIN => TwoKind::UpdatingJoin,
                        _ => TwoKind::IntervalJoin,
                    };
                    last_op = None;
                    cur = Value::Two(TwoVal {
                        kind,
                        left: stream,
                        right: other,
                        right_broadcast,
                        bounds: None,
                    });
                }
                KEY_BY => {
                    let arg = self.user_arg(mc, "a key selector closure such as `|r| r.id`")?;
                    let k = self.graph.keys.len();
                    self.graph.keys.push(KeyBy { expr: arg, span });
                    last_op = None;
                    cur = Value::Stream(StreamVal {
                        producers: stream.producers,
                        key: Some(k),
                        watermarked: stream.watermarked,
                    });
                }
                REDUCE => {
                    let arg = self
                        .user_arg(mc, "a closure combining two values, such as `|a, b| a + b`")?;
                    if stream.key.is_none() {
                        self.cx.error(span, "`reduce` needs a keyed stream: call `.key_by(|r| ...)` before it (use a constant key to reduce the whole stream)");
                    }
                    let id = self.new_op(OpKind::Reduce, mc, Some(arg));
                    self.connect(&stream, id);
                    last_op = Some(id);
                    cur = Value::Stream(StreamVal {
                        producers: vec![id],
                        key: None,
                        watermarked: stream.watermarked,
                    });
                }
                UNION => {
                    if mc.args.is_empty() {
                        self.cx
                            .error(span, "`union` takes one or more streams: `a.union(b)`");
                    }
                    let mut producers = stream.producers;
                    let mut watermarked = stream.watermarked;
                    for a in &mc.args {
                        if !self.is_stream_expr(a) {
                            self.cx.error(a.span(), "`union` takes streams: a stream variable or a chain starting with `env.source(...)`");
                            continue;
                        }
                        match self.chain(a) {
                            Some(Value::Stream(s)) => {
                                watermarked &= s.watermarked;
                                producers.extend(s.producers)
                            }
                            Some(Value::Windowed(_)) | Some(Value::Two(_)) => self.cx.error(
                                a.span(),
                                "this chain is not finished: it needs its window or join function",
                            ),
                            Some(Value::Sunk) => self.cx.error(
                                a.span(),
                                "this chain ends in a sink, so it has no stream to union",
                            ),
                            None => {}
                        }
                    }
                    last_op = None;
                    cur = Value::Stream(StreamVal {
                        producers,
                        key: None,
                        watermarked,
                    });
                }
                SINK => {
                    let arg = self.user_arg(mc, "the sink, such as `FileSink::json_lines(dir)`")?;
                    let id = self.new_op(OpKind::Sink, mc, Some(arg));
                    self.connect(&stream, id);
                    last_op = Some(id);
                    cur = Value::Sunk;
                }
                SOURCE => {
                    self.cx.error(
                        span,
                        format!(
                            "`source` is called on `{}`: `{}.source(...)` starts a new stream",
                            self.env, self.env
                        ),
                    );
                    return None;
                }
                other => {
                    let hint = did_you_mean(other, ALL_METHODS)
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default();
                    self.cx.error(
                        span,
                        format!(
                            "unknown operator `{other}`{hint} (weir supports {})",
                            OPERATORS.join(", ")
                        ),
                    );
                }
            }
        }
        Some(cur)
    }

    fn setting(&mut self, op: usize, mc: &ExprMethodCall) {
        let method = mc.method.to_string();
        let span = mc.method.span();
        let cx = self.cx;
        let o = &mut self.graph.ops[op];
        let no_args = |what: &str| {
            if !mc.args.is_empty() {
                cx.error(mc.args.span(), format!("`{what}()` takes no arguments"));
            }
        };
        let twice = |what: &str| {
            cx.error(
                span,
                format!("`{what}` is set twice on this operator: keep one"),
            )
        };
        match method.as_str() {
            PARALLELISM => {
                let lit = match mc.args.first() {
                    Some(Expr::Lit(l)) if mc.args.len() == 1 => match &l.lit {
                        Lit::Int(i) => i.base10_parse::<u32>().ok().map(|v| (v, i.span())),
                        _ => None,
                    },
                    _ => None,
                };
                match lit {
                    _ if o.window_all => cx.error(span, "`window_all` gathers the whole stream in one instance: its parallelism is always 1"),
                    None => cx.error(
                        mc.args.first().map(|a| a.span()).unwrap_or(span),
                        "`parallelism` takes an integer literal, such as `parallelism(4)`: chaining and placement are decided at compile time. To size a job at launch, leave `parallelism` out and pass `run --parallelism N`",
                    ),
                    Some(_) if o.parallelism.is_some() => twice(PARALLELISM),
                    Some((v, s)) => {
                        let max = self.graph.max_parallelism;
                        if v == 0 || v > max {
                            cx.error(s, format!("parallelism must be between 1 and the job's max_parallelism ({max}), got {v}; raise `max_parallelism` in `#[weir::job(...)]` or lower this"));
                        }
                        o.parallelism = Some((v, s));
                    }
                }
            }
            NAME | SLOT_SHARING_GROUP => {
                let lit = match mc.args.first() {
                    Some(Expr::Lit(l)) if mc.args.len() == 1 => match &l.lit {
                        Lit::Str(s) => Some((s.value(), s.span())),
                        _ => None,
                    },
                    _ => None,
                };
                match lit {
                    None => cx.error(
                        mc.args.first().map(|a| a.span()).unwrap_or(span),
                        format!(
                            "`{method}` takes a string literal, such as `{method}(\"orders\")`"
                        ),
                    ),
                    Some((v, s)) if v.trim().is_empty() => {
                        cx.error(s, format!("`{method}` must not be empty"))
                    }
                    Some(v) => {
                        let slot = if method == NAME {
                            &mut o.name
                        } else {
                            &mut o.group
                        };
                        if slot.is_some() {
                            twice(&method);
                        } else {
                            *slot = Some(v);
                        }
                    }
                }
            }
            DISABLE_CHAINING | START_NEW_CHAIN | CHAIN_WITH_PREVIOUS => {
                no_args(&method);
                let (this, others): (&mut Option<Span>, [(Option<Span>, &str); 2]) =
                    match method.as_str() {
                        DISABLE_CHAINING => (
                            &mut o.disable_chaining,
                            [
                                (o.start_new_chain, START_NEW_CHAIN),
                                (o.chain_with_previous, CHAIN_WITH_PREVIOUS),
                            ],
                        ),
                        START_NEW_CHAIN => (
                            &mut o.start_new_chain,
                            [
                                (o.disable_chaining, DISABLE_CHAINING),
                                (o.chain_with_previous, CHAIN_WITH_PREVIOUS),
                            ],
                        ),
                        _ => (
                            &mut o.chain_with_previous,
                            [
                                (o.disable_chaining, DISABLE_CHAINING),
                                (o.start_new_chain, START_NEW_CHAIN),
                            ],
                        ),
                    };
                if this.is_some() {
                    twice(&method);
                }
                *this = Some(span);
                for (other, other_name) in others {
                    if other.is_some() {
                        cx.error(span, format!("contradictory chaining hints: `{method}()` and `{other_name}()` on the same operator; keep one"));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether a window assigner expression is in processing time or counts records (written
/// with `TumblingProcessingTime`, `SlidingProcessingTime`, `SessionProcessingTime` or
/// `CountWindow`): such windows need no watermarks.
pub fn is_processing_time(assigner: &Expr) -> bool {
    let text = quote::quote!(#assigner).to_string();
    text.contains("ProcessingTime")
}

fn is_count_window(assigner: &Expr) -> bool {
    quote::quote!(#assigner).to_string().contains("CountWindow")
}

/// A window of size zero, a slide of zero or a session gap of zero never closes: reject
/// literal zeros in the assigner (`Tumbling::seconds(0)`, `Duration::from_secs(0)`,
/// `Duration::ZERO`).
fn check_window_size(assigner: &Expr, cx: &Diagnostics) {
    struct Zeros<'a>(&'a Diagnostics);
    impl<'ast> Visit<'ast> for Zeros<'_> {
        fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
            for a in &c.args {
                if let Expr::Lit(syn::ExprLit {
                    lit: Lit::Int(i), ..
                }) = a
                {
                    if i.base10_parse::<u64>().ok() == Some(0) {
                        self.0.error(i.span(), "a window size, slide or session gap of zero never closes a window: use a positive duration");
                    }
                }
            }
            syn::visit::visit_expr_call(self, c);
        }
        fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
            if p.path.segments.last().is_some_and(|s| s.ident == "ZERO") {
                self.0.error(p.span(), "a window size, slide or session gap of zero never closes a window: use a positive duration");
            }
        }
    }
    Zeros(cx).visit_expr(assigner);
}

fn describe_kind(e: &Expr) -> &'static str {
    match e {
        Expr::ForLoop(_) => "a `for` loop",
        Expr::While(_) => "a `while` loop",
        Expr::Loop(_) => "a `loop`",
        Expr::If(_) => "an `if`",
        Expr::Match(_) => "a `match`",
        Expr::Block(_) => "a block",
        Expr::Call(_) => "a function call",
        Expr::Macro(_) => "a macro call",
        Expr::Assign(_) => "an assignment",
        Expr::Return(_) => "a `return`",
        Expr::MethodCall(_) => "a method call that is not a stream chain",
        _ => "this expression",
    }
}

/// Walks user expressions: finds `env.arg("name")` and rejects streams used as values.
struct ExprScan<'a> {
    env: &'a Ident,
    vars: &'a HashMap<String, StreamVar>,
    cx: &'a Diagnostics,
    args: Vec<(String, bool)>,
}

impl<'ast> Visit<'ast> for ExprScan<'_> {
    fn visit_expr_method_call(&mut self, mc: &'ast ExprMethodCall) {
        if root_ident(&mc.receiver) == Some(self.env) {
            let m = mc.method.to_string();
            if m == ARG || m == ARG_OR {
                match mc.args.first() {
                    Some(Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. })) => self.args.push((s.value(), m == ARG_OR)),
                    _ => self.cx.error(mc.args.span(), format!("`{}.{m}` takes the argument's name as a string literal, so the job can check its arguments at start-up", self.env)),
                }
            } else if m == SOURCE {
                self.cx.error(mc.method.span(), format!("`{}.source(...)` can only start a pipeline chain, not appear inside an expression", self.env));
            }
        }
        syn::visit::visit_expr_method_call(self, mc);
    }
    fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
        if let Some(id) = p.path.get_ident() {
            if self.vars.contains_key(&id.to_string()) {
                self.cx.error(id.span(), format!("stream `{id}` cannot be used as a value: streams are only used in method chains such as `{id}.map(...)`"));
            }
        }
    }
}

fn default_name(kind: OpKind) -> &'static str {
    kind.method()
}

/// Give every operator a unique name: the user's, or the method name with a `-2`, `-3`
/// suffix when taken. Duplicate user names are an error reported by validation.
fn resolve_names(g: &mut Graph) {
    let mut taken: Vec<String> = g
        .ops
        .iter()
        .filter_map(|o| o.name.as_ref().map(|(n, _)| n.clone()))
        .collect();
    for o in g.ops.iter_mut() {
        o.resolved_name = match &o.name {
            Some((n, _)) => n.clone(),
            None => {
                let base = default_name(o.kind);
                let mut candidate = base.to_string();
                let mut i = 2;
                while taken.contains(&candidate) {
                    candidate = format!("{base}-{i}");
                    i += 1;
                }
                taken.push(candidate.clone());
                candidate
            }
        };
    }
}
