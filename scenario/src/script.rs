//! Scripts: what YAML cannot say, written in [Rhai](https://rhai.rs), an embeddable language
//! made for Rust. `script` steps compute and set VU values, `if` and `while` steps branch and
//! loop on a condition, `on_message` rules take a script condition (`if`) and action
//! (`script`), and a `${...}` template that is not a plain variable is an expression
//! (`${hex(hmac_sha256(users.secret, body))}`).
//!
//! Scripts are compiled when the scenario is validated, by the controller and by every agent
//! (one AST per script per run, shared by every VU; the engine is `Send + Sync` with Rhai's
//! `sync` feature). Compiling checks every variable a script reads against the values the
//! scenario defines, so a misspelt name is a located error before anything runs. A VU keeps
//! one [`ScriptScope`] and fills it, per call, with only the values that script reads (text
//! that did not change since the last call of a script reading the same values stays as it
//! was); it also keeps Rhai's runtime state and function resolution cache, which a plain
//! `Engine::eval_ast_with_scope` would make and drop at every call (a third of a small
//! script's cost), and what a script sets is written over the VU's values in place.
//!
//! The engine is a sandbox: limits on operations, call depth, expression depth, string, array
//! and map sizes and variables per call; no `eval`, no modules (`import`), `print` and `debug`
//! go nowhere. Rhai itself has no file, network or process access, and the functions added
//! here (`functions`) have none either.

mod functions;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use smallvec::SmallVec;

use rhai::{ASTFlags, ASTNode, Caches, Dynamic, Engine, Expr, GlobalRuntimeState, Position, Stmt, AST};

pub use functions::FUNCTIONS;

use crate::matcher::{FrameKind, Incoming};
use crate::template::Scope;

/// Operations (Rhai's unit of work: a step of an expression, a loop round) per call.
pub const MAX_OPERATIONS: u64 = 100_000;
/// Nested function calls per call.
pub const MAX_CALL_LEVELS: usize = 32;
/// How deeply expressions may nest (in functions: `MAX_FUNCTION_EXPRESSION_DEPTH`).
pub const MAX_EXPRESSION_DEPTH: usize = 64;
pub const MAX_FUNCTION_EXPRESSION_DEPTH: usize = 32;
/// The longest string a script may build, in bytes.
pub const MAX_STRING_BYTES: usize = 1 << 20;
/// The most items an array (or bytes a blob) and the most entries a map may hold.
pub const MAX_ARRAY_ITEMS: usize = 65_536;
pub const MAX_MAP_ENTRIES: usize = 65_536;
/// Variables a call may hold at once (the values it reads count).
pub const MAX_VARIABLES: usize = 1_024;

/// The variable an `on_message` rule's script reads the message from.
pub const MESSAGE_VARIABLE: &str = "message";

/// Built-in values every script may read, beside the scenario's own.
pub const BUILTIN_VALUES: &[&str] = &["vu", "iteration", "vu_iteration", "agent"];

/// The engine scripts run on: strict about variables, so unknown names fail to compile.
static ENGINE: LazyLock<Engine> = LazyLock::new(|| sandboxed(true));
/// The same engine without the variable check, to read what a script declares before every
/// name of the scenario is known.
static LOOSE: LazyLock<Engine> = LazyLock::new(|| sandboxed(false));

fn sandboxed(strict: bool) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPRESSION_DEPTH, MAX_FUNCTION_EXPRESSION_DEPTH)
        .set_max_string_size(MAX_STRING_BYTES)
        .set_max_array_size(MAX_ARRAY_ITEMS)
        .set_max_map_size(MAX_MAP_ENTRIES)
        .set_max_variables(MAX_VARIABLES)
        .set_strict_variables(strict)
        // No string interning: the interner is one lock shared by every worker thread, taken by
        // every `let` of a string, and what scripts set becomes VU text at once anyway (a
        // string `let` cost about 390 instructions more with it).
        .set_max_strings_interned(0)
        .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new())
        .on_print(|_| {})
        .on_debug(|_, _, _| {});
    // `eval` would compile text at run time, past validation; `import` would load modules.
    engine.disable_symbol("eval").disable_symbol("import");
    functions::register(&mut engine);
    engine
}

/// What a script is: one expression (conditions, `${...}`) or statements (`script` steps and
/// rule scripts), whose top-level `let`s set VU values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Expression,
    Statements,
}

/// The names a script may read where it stands.
pub struct Names<'a> {
    /// Every value the scenario defines (variables, run values, feed columns, extractions,
    /// what scripts set).
    pub known: &'a [String],
    /// Whether the message being handled is readable (`on_message` rules).
    pub message: bool,
}

/// A compiled script, shared by every VU of the run (cloning is a reference count).
#[derive(Clone)]
pub struct Script(Arc<Compiled>);

struct Compiled {
    source: String,
    form: Form,
    ast: AST,
    /// What to put in the scope before a call: only the values the script reads.
    reads: Vec<Read>,
    /// The VU values a statements script sets: its top-level `let`s.
    sets: Vec<String>,
    /// Whether a run-time failure of this script was logged already (once per run).
    logged: AtomicBool,
}

/// A value a script reads, and how to put it in the scope.
#[derive(Clone, Debug, PartialEq)]
enum Read {
    Vu,
    Iteration,
    VuIteration,
    Agent,
    Message,
    /// A VU or run value, as text.
    Value(String),
    /// `users.name`, `testserver.url`: the root becomes a map of the values under it
    /// (key, full name).
    Map(String, Vec<(String, String)>),
}

impl fmt::Debug for Script {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_tuple("Script").field(&self.0.source).finish()
    }
}

impl PartialEq for Script {
    fn eq(&self, other: &Script) -> bool {
        self.0.source == other.0.source && self.0.form == other.0.form
    }
}

/// Why a script does not compile, with its position inside the script (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The variable the script reads and nothing defines, when that is the error.
    pub unknown: Option<String>,
}

impl fmt::Display for CompileError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(formatter, "script line {line}, column {column}: {}", self.message)
            }
            _ => formatter.write_str(&self.message),
        }
    }
}

/// A script that failed while it ran: a Rhai error (its message names the script's line and
/// position), a limit reached, or a value that cannot become text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScriptError {
    pub message: String,
}

impl ScriptError {
    fn new(message: impl Into<String>) -> ScriptError {
        ScriptError {
            message: message.into(),
        }
    }
}

impl From<Box<rhai::EvalAltResult>> for ScriptError {
    fn from(error: Box<rhai::EvalAltResult>) -> ScriptError {
        ScriptError::new(error.to_string())
    }
}

/// Compiles `source`, checking every name it reads against `names`.
pub fn compile(source: &str, form: Form, names: &Names<'_>) -> Result<Script, CompileError> {
    let roots = roots(names);
    let mut scope = rhai::Scope::new();
    for name in roots.keys() {
        scope.push(name.clone(), ());
    }
    let compiled = match form {
        Form::Expression => ENGINE.compile_expression_with_scope(&scope, source),
        Form::Statements => ENGINE.compile_with_scope(&scope, source),
    };
    let ast = compiled.map_err(|error| CompileError {
        message: error.err_type().to_string(),
        line: error.position().line(),
        column: error.position().position(),
        unknown: match error.err_type() {
            rhai::ParseErrorType::VariableUndefined(name) => Some(name.clone()),
            _ => None,
        },
    })?;
    let mut used = BTreeSet::new();
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Expr(Expr::Variable(variable, ..))) = path.last() {
            used.insert(variable.1.to_string());
        }
        true
    });
    if let Some(error) = outside_a_function(&ast) {
        return Err(error);
    }
    let reads = roots
        .into_iter()
        .filter(|(name, _)| used.contains(name))
        .map(|(_, read)| read)
        .collect();
    let sets = match form {
        Form::Statements => top_level_lets(&ast),
        Form::Expression => Vec::new(),
    };
    Ok(Script(Arc::new(Compiled {
        source: source.to_owned(),
        form,
        ast,
        reads,
        sets,
        logged: AtomicBool::new(false),
    })))
}

/// The first variable a function body (a `fn` or an anonymous function) reads from outside
/// itself, as a located error. Rhai is built without closures: a function sees its parameters,
/// its own variables, the script's functions and (as `global::NAME`) its top-level constants,
/// and nothing of the scope it is called from, so such a read would fail at every call; strict
/// variables do not catch it when the name is one the scenario defines. The parser resolves a
/// function's own variables to a position in its frame: a read it left unresolved is from
/// outside.
fn outside_a_function(ast: &AST) -> Option<CompileError> {
    // The script's function names: a function's name read as a value is a pointer to it.
    let functions: BTreeSet<String> = ast.iter_functions().map(|function| function.name.to_owned()).collect();
    let place = |position: &Position| (position.line(), position.position());
    // The first in the script's text (functions are walked in the order of their table).
    let mut found: Option<(Position, String)> = None;
    // The functions alone: the script's own statements read its scope by right.
    ast.clone_functions_only().walk(&mut |nodes: &[ASTNode]| {
        if let Some(ASTNode::Expr(Expr::Variable(variable, short_index, position))) = nodes.last() {
            let name = variable.1.as_str();
            // `global::NAME` (the only namespace without modules) reads a top-level constant.
            let unresolved = variable.0.is_none() && short_index.is_none() && variable.2.is_empty();
            let earlier = found.as_ref().is_none_or(|(first, _)| place(position) < place(first));
            if unresolved && earlier && !functions.contains(name) {
                found = Some((*position, name.to_owned()));
            }
        }
        true
    });
    found.map(|(position, name)| CompileError {
        message: format!(
            "a function cannot use `{name}`: functions (and `|x| ...`) see only their parameters and their own variables; pass `{name}` as an argument"
        ),
        line: position.line(),
        column: position.position(),
        unknown: None,
    })
}

/// The VU values a statements script sets (its top-level `let`s); none when it does not
/// compile (validation reports that where the script stands).
pub fn declared(source: &str) -> Vec<String> {
    LOOSE
        .compile(source)
        .map(|ast| top_level_lets(&ast))
        .unwrap_or_default()
}

fn top_level_lets(ast: &AST) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for statement in ast.statements() {
        if let Stmt::Var(declaration, flags, _) = statement {
            let name = declaration.0.name.as_str();
            if !flags.contains(ASTFlags::CONSTANT) && !names.iter().any(|known| known == name) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// Whether `name` can be written in a script as it is.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The variables a script may read, by the name it reads them with: built-ins, plain names,
/// and the roots of dotted names (`users` for `users.name`), whose keys are the rest. A plain
/// name wins over a root of the same spelling.
/// The names a script may read here (the roots of dotted names), for hints.
pub fn readable(names: &Names<'_>) -> Vec<String> {
    roots(names).into_keys().collect()
}

fn roots(names: &Names<'_>) -> BTreeMap<String, Read> {
    let mut roots: BTreeMap<String, Read> = BTreeMap::new();
    for name in names.known {
        match name.split_once('.') {
            Some((root, key)) if is_identifier(root) => {
                let entry = roots
                    .entry(root.to_owned())
                    .or_insert_with(|| Read::Map(root.to_owned(), Vec::new()));
                if let Read::Map(_, keys) = entry {
                    keys.push((key.to_owned(), name.clone()));
                }
            }
            None if is_identifier(name) => {
                roots.insert(name.clone(), Read::Value(name.clone()));
            }
            _ => {}
        }
    }
    roots.insert("vu".into(), Read::Vu);
    roots.insert("iteration".into(), Read::Iteration);
    roots.insert("vu_iteration".into(), Read::VuIteration);
    roots.insert("agent".into(), Read::Agent);
    if names.message {
        roots.insert(MESSAGE_VARIABLE.into(), Read::Message);
    }
    roots
}

/// What a VU keeps between its script calls so that a call allocates and sets up as little
/// as it can: the Rhai scope the values go into, Rhai's runtime state and its function
/// resolution cache. Made on the first call: a VU that runs no script holds only an empty cell.
#[derive(Default)]
pub struct ScriptScope(RefCell<Option<Box<Runtime>>>);

/// One VU's (or, for templates, one thread's) Rhai state between calls. Every call starts from
/// the same state as a fresh one would (an empty scope, no operations counted, no constants),
/// so the sandbox's limits hold per call; only storage and the resolution of the engine's own
/// functions are carried over.
struct Runtime {
    scope: rhai::Scope<'static>,
    global: GlobalRuntimeState,
    /// Function resolutions against the engine's functions, for scripts that define none of
    /// their own (a script's own functions are resolved in a cache of that call's).
    caches: Caches,
    /// The script whose reads the scope begins with (see [`Script::fill`]).
    filled: Option<Script>,
}

impl Runtime {
    fn new() -> Runtime {
        Runtime {
            scope: rhai::Scope::new(),
            global: ENGINE.new_global_runtime_state(),
            caches: Caches::new(),
            filled: None,
        }
    }
}

thread_local! {
    /// The runtime `${...}` expressions are rendered in: templates are rendered where no VU's
    /// scope is at hand, always on the thread of the VU that renders them.
    static TEMPLATES: ScriptScope = ScriptScope::default();
}

/// What a statements script set, taken out of its VU's scope (in the order of
/// [`Script::sets`]) until stored: no name is looked up in the scope again.
pub struct Sets<'a> {
    names: &'a [String],
    values: SmallVec<[Option<Dynamic>; 2]>,
}

impl Sets<'_> {
    /// The text of every value the script set, in the order of [`Script::sets`].
    pub fn texts(&self) -> Vec<String> {
        self.values
            .iter()
            .map(|value| {
                let mut text = String::new();
                if let Some(value) = value {
                    write_text(value, &mut text);
                }
                text
            })
            .collect()
    }

    /// Stores what the script set into the VU's values, writing over their text in place.
    pub fn store(self, vars: &mut crate::template::Values) {
        for (name, value) in self.names.iter().zip(&self.values) {
            match vars.get_mut(name) {
                Some(slot) => {
                    slot.clear();
                    if let Some(value) = value {
                        write_text(value, slot);
                    }
                }
                None => {
                    let mut text = String::new();
                    if let Some(value) = value {
                        write_text(value, &mut text);
                    }
                    vars.insert(name.clone(), text);
                }
            }
        }
    }
}

impl Script {
    /// The script as written.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// The VU values this script sets, in the order of [`Sets::texts`].
    pub fn sets(&self) -> &[String] {
        &self.0.sets
    }

    /// `true` the first time it is asked in a run: a failing script is logged once, then
    /// counted only.
    pub fn first_failure(&self) -> bool {
        !self.0.logged.swap(true, Ordering::Relaxed)
    }

    /// Evaluates the script with the values it reads from `values` (and the message, for
    /// rules); returns its value.
    pub fn eval(
        &self,
        scope: &ScriptScope,
        values: &Scope<'_>,
        message: Option<Incoming<'_>>,
    ) -> Result<Dynamic, ScriptError> {
        let mut cell = scope.0.borrow_mut();
        self.call(&mut cell, values, message)
    }

    /// Evaluates a condition: it must be `true` or `false`.
    pub fn condition(
        &self,
        scope: &ScriptScope,
        values: &Scope<'_>,
        message: Option<Incoming<'_>>,
    ) -> Result<bool, ScriptError> {
        let value = self.eval(scope, values, message)?;
        value.as_bool().map_err(|kind| {
            ScriptError::new(format!(
                "the condition `{}` gave a {kind}, not true or false",
                self.0.source.trim()
            ))
        })
    }

    /// Runs a statements script and takes what it set out of the scope (a top-level `let`'s
    /// variable is the script's own: the next call rewinds the scope past it). A value that has
    /// no text form (a blob) fails the script, and nothing is stored.
    pub fn run<'s>(
        &'s self,
        scope: &ScriptScope,
        values: &Scope<'_>,
        message: Option<Incoming<'_>>,
    ) -> Result<Sets<'s>, ScriptError> {
        let mut cell = scope.0.borrow_mut();
        // A statements script's value is its last statement's: what it sets is what counts.
        let _ = self.call(&mut cell, values, message)?;
        let mut taken = SmallVec::with_capacity(self.0.sets.len());
        if let Some(runtime) = cell.as_mut() {
            for name in &self.0.sets {
                let value = match runtime.scope.get_mut(name) {
                    Some(value) => Some(std::mem::take(value)),
                    // A top-level `const` of the same name, declared after the `let`, hides it
                    // from `get_mut`: its value is the name's last, as a template would read it.
                    None => runtime.scope.get(name).cloned(),
                };
                taken.push(value.map(storable).transpose()?);
            }
        }
        Ok(Sets {
            names: &self.0.sets,
            values: taken,
        })
    }

    /// Evaluates an expression into the text a template writes.
    pub fn render(&self, values: &Scope<'_>) -> Result<String, ScriptError> {
        TEMPLATES.with(|scope| match scope.0.try_borrow_mut() {
            Ok(mut cell) => text(self.call(&mut cell, values, None)?),
            // A template rendered while another renders (a script function would have to
            // render one): a runtime of its own.
            Err(_) => text(self.call(&mut None, values, None)?),
        })
    }

    /// One call in `cell`'s runtime (made on the first call, made again after a failure).
    fn call(
        &self,
        cell: &mut Option<Box<Runtime>>,
        values: &Scope<'_>,
        message: Option<Incoming<'_>>,
    ) -> Result<Dynamic, ScriptError> {
        let runtime = cell.get_or_insert_with(|| Box::new(Runtime::new()));
        self.fill(runtime, values, message);
        // What `Engine::eval_ast_with_scope` does, with state kept from the previous call
        // instead of made anew: the call counts its own operations, sees no constants of an
        // earlier script, and resolves its own functions in a cache of its own.
        let global = &mut runtime.global;
        global.num_operations = Default::default();
        global.constants = None;
        let ast = &self.0.ast;
        // `eval_statements_raw` is what `eval_ast_with_scope` runs once it made its state; it is
        // deprecated in Rhai 1.12 without a replacement taking the caller's state.
        #[allow(deprecated)]
        let result = if ast.has_functions() {
            let functions = global.lib.len();
            global.lib.push(ast.shared_lib().clone());
            let result = ENGINE.eval_statements_raw(global, &mut Caches::new(), &mut runtime.scope, ast.statements());
            global.lib.truncate(functions);
            result
        } else {
            ENGINE.eval_statements_raw(global, &mut runtime.caches, &mut runtime.scope, ast.statements())
        };
        match result {
            Ok(value) => Ok(value),
            Err(error) => {
                // Whatever a failure left half done goes with it.
                *cell = None;
                Err(error.into())
            }
        }
    }

    /// Puts in the runtime's scope what the script reads, and nothing else. After a call of
    /// the same script, or of one that reads the same values (the steps of a `repeat` that run
    /// one script text each before their send), its names are in place already (a call only
    /// adds variables after them, and a failed call drops the runtime): only their values are
    /// brought up to date, and text that has not changed since is not copied again (see
    /// [`Read::refresh`]).
    fn fill(&self, runtime: &mut Runtime, values: &Scope<'_>, message: Option<Incoming<'_>>) {
        let reads = &self.0.reads;
        let same = runtime
            .filled
            .as_ref()
            .is_some_and(|last| Arc::ptr_eq(&last.0, &self.0) || last.0.reads == *reads);
        if same && runtime.scope.len() >= reads.len() {
            runtime.scope.rewind(reads.len());
            let mut complete = true;
            for read in reads {
                match runtime.scope.get_mut(read.name()) {
                    Some(slot) => read.refresh(slot, values, message),
                    None => complete = false,
                }
            }
            if complete {
                return;
            }
        }
        runtime.scope.clear();
        for read in reads {
            let (name, value) = read.value(values, message);
            runtime.scope.push_dynamic(name, value);
        }
        // Held, not only compared by address: a script dropped after a run cannot be mistaken
        // for a new one at the same address.
        runtime.filled = Some(self.clone());
    }
}

impl Read {
    /// The name a script reads this value by.
    fn name(&self) -> &str {
        match self {
            Read::Vu => "vu",
            Read::Iteration => "iteration",
            Read::VuIteration => "vu_iteration",
            Read::Agent => "agent",
            Read::Message => MESSAGE_VARIABLE,
            Read::Value(name) | Read::Map(name, _) => name,
        }
    }

    /// Brings `slot`, this value as the previous call left it, up to date. Text that the
    /// previous call read and left as it was is kept rather than copied again (a copy is an
    /// allocation and a free); anything else is written over as a fresh call would see it.
    fn refresh(&self, slot: &mut Dynamic, values: &Scope<'_>, message: Option<Incoming<'_>>) {
        let unchanged = slot.tag() == 0
            && match self {
                Read::Agent => same_text(slot, values.agent),
                Read::Value(name) => same_text(slot, values.lookup(name).unwrap_or("")),
                Read::Map(_, keys) => slot.as_map_ref().is_ok_and(|map| {
                    map.len() == keys.len()
                        && keys.iter().all(|(key, full)| {
                            map.get(key.as_str())
                                .is_some_and(|value| same_text(value, values.lookup(full).unwrap_or("")))
                        })
                }),
                _ => false,
            };
        if !unchanged {
            *slot = self.value(values, message).1;
        }
    }

    /// The name a script reads this value by, and the value.
    fn value<'r>(&'r self, values: &Scope<'_>, message: Option<Incoming<'_>>) -> (&'r str, Dynamic) {
        match self {
            Read::Vu => ("vu", Dynamic::from(values.vu as i64)),
            Read::Iteration => ("iteration", Dynamic::from(values.iteration as i64)),
            Read::VuIteration => ("vu_iteration", Dynamic::from(values.vu_iteration as i64)),
            Read::Agent => ("agent", Dynamic::from(values.agent.to_owned())),
            Read::Message => (
                MESSAGE_VARIABLE,
                match message {
                    Some(Incoming {
                        bytes,
                        kind: FrameKind::Text,
                        ..
                    }) => Dynamic::from(String::from_utf8_lossy(bytes).into_owned()),
                    Some(Incoming { bytes, .. }) => Dynamic::from_blob(bytes.to_vec()),
                    None => Dynamic::from(String::new()),
                },
            ),
            Read::Value(name) => (name, Dynamic::from(values.lookup(name).unwrap_or("").to_owned())),
            Read::Map(root, keys) => {
                let map: rhai::Map = keys
                    .iter()
                    .map(|(key, full)| {
                        let value = values.lookup(full).unwrap_or("");
                        (key.as_str().into(), Dynamic::from(value.to_owned()))
                    })
                    .collect();
                (root, Dynamic::from_map(map))
            }
        }
    }
}

/// A value a script set as it is stored: maps and arrays become their JSON text here, where it
/// may fail, and a blob fails (see [`text`]).
fn storable(value: Dynamic) -> Result<Dynamic, ScriptError> {
    if value.is_map() || value.is_array() || value.is_blob() {
        return Ok(Dynamic::from(text(value)?));
    }
    Ok(value)
}

/// Whether `value` is the string `text`, untagged, as a fresh call would see it.
fn same_text(value: &Dynamic, text: &str) -> bool {
    value.tag() == 0
        && value
            .as_immutable_string_ref()
            .is_ok_and(|string| string.as_str() == text)
}

/// The text of a script's value: strings as they are, `()` empty, numbers and booleans as
/// written, maps and arrays as JSON. A blob has no single text form: `hex()` or `base64()`
/// says which.
pub fn text(value: Dynamic) -> Result<String, ScriptError> {
    if value.is_unit() {
        return Ok(String::new());
    }
    if value.is_string() {
        return value.into_string().map_err(ScriptError::new);
    }
    if value.is_blob() {
        return Err(ScriptError::new(
            "a blob (bytes) has no text form: write it with hex(...) or base64(...)",
        ));
    }
    if value.is_map() || value.is_array() {
        return serde_json::to_string(&value).map_err(|error| ScriptError::new(error.to_string()));
    }
    Ok(value.to_string())
}

/// Writes the text of a value [`Script::run`] kept after `out`'s text: integers, booleans and
/// strings without going through `Display` or a new string.
fn write_text(value: &Dynamic, out: &mut String) {
    if let Ok(number) = value.as_int() {
        out.push_str(itoa::Buffer::new().format(number));
    } else if let Ok(flag) = value.as_bool() {
        out.push_str(if flag { "true" } else { "false" });
    } else if let Ok(string) = value.as_immutable_string_ref() {
        out.push_str(&string);
    } else if let Ok(text) = text(value.clone()) {
        // Floats, characters and the rest as `Display` writes them (`Script::run` made maps
        // and arrays JSON text already).
        out.push_str(&text);
    }
}

#[cfg(test)]
mod tests;
