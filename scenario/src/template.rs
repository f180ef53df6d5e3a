//! `${...}` templates: every string field of a scenario may hold them. They are compiled once
//! when the scenario is validated (so an unknown variable is an error before anything runs) and
//! rendered per use without re-parsing. Besides variables and the built-in forms, `${...}` may
//! hold a script expression (`${hex(hmac_sha256(users.secret, body))}`, see `crate::script`):
//! its braces and string literals may nest, the template ends at the `}` that balances `${`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use rand::Rng;

/// A variable a template refers to.
#[derive(Clone, Debug, PartialEq)]
pub enum Var {
    /// The VU number, unique across the fleet (0-based).
    Vu,
    /// The innermost `repeat`'s index, or the VU's iteration outside any repeat (0-based).
    Iteration,
    /// How many times this VU has started the scenario's steps (0-based).
    VuIteration,
    /// The agent's id.
    Agent,
    /// A random UUID v4, new at each use.
    Uuid,
    /// Wall-clock milliseconds since the Unix epoch.
    TimestampMs,
    /// A uniformly random integer in `[low, high]`, new at each use.
    RandomInt(i64, i64),
    /// A random alphanumeric string of this length, new at each use.
    RandomString(usize),
    /// A named value: scenario variables, run values (`target`, `testserver.url`), values
    /// extracted by earlier steps, data feed columns.
    Named(String),
    /// Integer arithmetic on a counter: `${vu % 10}`, `${iteration + 1}`.
    Arith(Box<Var>, ArithOp, i64),
    /// A script expression, evaluated at each use.
    Script(crate::script::Script),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// A compiled template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Named values by name: a run's (`Scope::named`) and a VU's own (`Scope::local`), which every
/// template, script, extraction and script result looks up or stores into. Hashed with
/// foldhash, not the standard library's SipHash: the names are the scenario's own, not a
/// peer's, so SipHash's resistance to chosen keys buys nothing, and a lookup of a short name
/// costs a fraction of SipHash's.
pub type Values = HashMap<String, String, foldhash::fast::RandomState>;

/// What a template is rendered against.
pub struct Scope<'a> {
    pub vu: u64,
    pub iteration: u64,
    pub vu_iteration: u64,
    pub agent: &'a str,
    pub named: &'a Values,
    /// The VU's own values (extracted, states, data feed rows), looked up before `named`.
    pub local: Option<&'a Values>,
}

impl Scope<'_> {
    /// A named value: the VU's own first, then the run's.
    pub fn lookup(&self, name: &str) -> Option<&str> {
        self.local
            .and_then(|local| local.get(name))
            .or_else(|| self.named.get(name))
            .map(String::as_str)
    }
}

impl Template {
    /// A template that renders to `text` as it is.
    pub fn literal(text: impl Into<String>) -> Template {
        Template {
            parts: vec![Part::Literal(text.into())],
        }
    }

    /// Compiles `text`; `is_known` says whether a named variable exists at this point of the
    /// scenario. `$${` writes a literal `${`.
    pub fn compile(text: &str, is_known: &dyn Fn(&str) -> bool) -> Result<Template, TemplateError> {
        Template::compile_inner(text, is_known, None)
    }

    /// Compiles `text` where `known` names every value there is: an expression that is not a
    /// variable or a built-in form is compiled as a script expression reading them.
    pub fn compile_with_scripts(text: &str, known: &[String]) -> Result<Template, TemplateError> {
        let is_known = |name: &str| known.iter().any(|candidate| candidate == name);
        Template::compile_inner(text, &is_known, Some(known))
    }

    fn compile_inner(
        text: &str,
        is_known: &dyn Fn(&str) -> bool,
        script_names: Option<&[String]>,
    ) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('$') {
            literal.push_str(&rest[..start]);
            let after = &rest[start..];
            if let Some(stripped) = after.strip_prefix("$${") {
                literal.push_str("${");
                rest = stripped;
                continue;
            }
            let Some(body_start) = after.strip_prefix("${") else {
                literal.push('$');
                rest = &after[1..];
                continue;
            };
            let Some(end) = closing_brace(body_start) else {
                return Err(TemplateError::Unclosed(text.to_owned()));
            };
            let expression = body_start[..end].trim();
            let var = parse_var(expression, is_known, script_names)?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(var));
            rest = &body_start[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() || parts.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// The text when the template has no variables.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// The template with each `${...}` written as `wildcard`: the name of the metric set that
    /// counts what a templated key renders to (`/topic/room.${vu % 3}` is `/topic/room.*`).
    pub fn pattern(&self, wildcard: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Var(_) => out.push_str(wildcard),
            }
        }
        out
    }

    /// The named variables this template reads.
    pub fn named_vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Var(Var::Named(name)) => Some(name.as_str()),
            _ => None,
        })
    }

    /// Renders against `scope`; a named variable missing at run time renders empty (validation
    /// has ruled out names that can never exist), and so does a script expression that fails:
    /// where that failure must count, use [`Template::try_render`].
    pub fn render<'t>(&'t self, scope: &Scope<'_>) -> Cow<'t, str> {
        self.try_render_with(scope, false).unwrap_or_default()
    }

    /// Renders against `scope`; a script expression that fails is an error (counted by agents
    /// as the `script` error kind).
    pub fn try_render<'t>(&'t self, scope: &Scope<'_>) -> Result<Cow<'t, str>, crate::script::ScriptError> {
        self.try_render_with(scope, true)
    }

    fn try_render_with<'t>(
        &'t self,
        scope: &Scope<'_>,
        strict: bool,
    ) -> Result<Cow<'t, str>, crate::script::ScriptError> {
        if let Some(text) = self.as_literal() {
            return Ok(Cow::Borrowed(text));
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Var(Var::Script(script)) => match script.render(scope) {
                    Ok(text) => out.push_str(&text),
                    Err(error) if strict => return Err(error),
                    Err(_) => {}
                },
                Part::Var(var) => render_var(var, scope, &mut out),
            }
        }
        Ok(Cow::Owned(out))
    }

    /// Whether a part of the template is a script expression.
    pub fn has_scripts(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::Var(Var::Script(_))))
    }
}

/// Where the `}` that closes a `${` stands in `body` (the text after `${`): braces nest, and
/// string literals (`"..."`, `` `...` ``, `'.'`) are skipped with their escapes.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (at, c) in body.char_indices() {
        if let Some(open) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == open {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '`' | '\'' => quote = Some(c),
            '{' => depth += 1,
            '}' if depth == 0 => return Some(at),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn render_var(var: &Var, scope: &Scope<'_>, out: &mut String) {
    // Writing into a String cannot fail.
    let _ = match var {
        // Rendered by the caller, which decides what a failure does.
        Var::Script(_) => Ok(()),
        Var::Vu => write!(out, "{}", scope.vu),
        Var::Iteration => write!(out, "{}", scope.iteration),
        Var::VuIteration => write!(out, "{}", scope.vu_iteration),
        Var::Agent => write!(out, "{}", scope.agent),
        Var::Uuid => write!(out, "{}", uuid::Uuid::new_v4()),
        Var::TimestampMs => write!(
            out,
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_millis())
                .unwrap_or(0)
        ),
        Var::RandomInt(low, high) => write!(out, "{}", rand::rng().random_range(*low..=*high)),
        Var::RandomString(length) => {
            let mut rng = rand::rng();
            out.extend((0..*length).map(|_| rng.sample(rand::distr::Alphanumeric) as char));
            Ok(())
        }
        Var::Named(name) => {
            if let Some(value) = scope.lookup(name) {
                out.push_str(value);
            }
            Ok(())
        }
        Var::Arith(base, op, operand) => {
            let value = match **base {
                Var::Vu => scope.vu as i64,
                Var::Iteration => scope.iteration as i64,
                Var::VuIteration => scope.vu_iteration as i64,
                _ => 0,
            };
            // Validation ruled out division by zero; overflow wraps rather than panics.
            let result = match op {
                ArithOp::Add => value.wrapping_add(*operand),
                ArithOp::Sub => value.wrapping_sub(*operand),
                ArithOp::Mul => value.wrapping_mul(*operand),
                ArithOp::Div => value.checked_div(*operand).unwrap_or(0),
                ArithOp::Rem => value.checked_rem(*operand).unwrap_or(0),
            };
            write!(out, "{result}")
        }
    };
}

/// The built-in variables, for suggestions.
pub const BUILTIN_VARIABLES: &[&str] = &[
    "vu",
    "iteration",
    "vu_iteration",
    "agent",
    "uuid",
    "timestamp_ms",
    "random_int(LOW,HIGH)",
    "random_string(LENGTH)",
    "vu % N",
    "iteration + N",
];

/// `vu % 10`, `iteration+1`: a counter, an operator and an integer.
fn parse_arith(expression: &str) -> Option<Result<Var, TemplateError>> {
    let at = expression.find(['+', '-', '*', '/', '%'])?;
    let base = match expression[..at].trim() {
        "vu" => Var::Vu,
        "iteration" => Var::Iteration,
        "vu_iteration" => Var::VuIteration,
        _ => return None,
    };
    let op = match &expression[at..at + 1] {
        "+" => ArithOp::Add,
        "-" => ArithOp::Sub,
        "*" => ArithOp::Mul,
        "/" => ArithOp::Div,
        _ => ArithOp::Rem,
    };
    let bad = || TemplateError::BadCall(expression.to_owned(), "COUNTER OP INTEGER, e.g. `vu % 10`");
    let Ok(operand) = expression[at + 1..].trim().parse::<i64>() else {
        return Some(Err(bad()));
    };
    if operand == 0 && matches!(op, ArithOp::Div | ArithOp::Rem) {
        return Some(Err(TemplateError::BadCall(
            expression.to_owned(),
            "a divisor other than 0",
        )));
    }
    Some(Ok(Var::Arith(Box::new(base), op, operand)))
}

fn parse_var(
    expression: &str,
    is_known: &dyn Fn(&str) -> bool,
    script_names: Option<&[String]>,
) -> Result<Var, TemplateError> {
    let var = match expression {
        "vu" => Var::Vu,
        "iteration" => Var::Iteration,
        "vu_iteration" => Var::VuIteration,
        "agent" => Var::Agent,
        "uuid" => Var::Uuid,
        "timestamp_ms" => Var::TimestampMs,
        _ => {
            match parse_arith(expression) {
                // `iteration * 2 + 1` is longer than the built-in form: a script says it.
                Some(Err(TemplateError::BadCall(_, hint))) if script_names.is_some() && hint.starts_with("COUNTER") => {
                }
                Some(arith) => return arith,
                None => {}
            }
            if let Some(arguments) = call_arguments(expression, "random_int") {
                let [low, high] = arguments.as_slice() else {
                    return Err(TemplateError::BadCall(expression.to_owned(), "random_int(LOW,HIGH)"));
                };
                let (Ok(low), Ok(high)) = (low.parse::<i64>(), high.parse::<i64>()) else {
                    return Err(TemplateError::BadCall(expression.to_owned(), "random_int(LOW,HIGH)"));
                };
                if low > high {
                    return Err(TemplateError::BadCall(
                        expression.to_owned(),
                        "random_int(LOW,HIGH) with LOW <= HIGH",
                    ));
                }
                return Ok(Var::RandomInt(low, high));
            }
            if let Some(arguments) = call_arguments(expression, "random_string") {
                let [length] = arguments.as_slice() else {
                    return Err(TemplateError::BadCall(expression.to_owned(), "random_string(LENGTH)"));
                };
                let Ok(length) = length.parse::<usize>() else {
                    return Err(TemplateError::BadCall(expression.to_owned(), "random_string(LENGTH)"));
                };
                return Ok(Var::RandomString(length));
            }
            let is_name = !expression.is_empty()
                && expression
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if is_name && is_known(expression) {
                return Ok(Var::Named(expression.to_owned()));
            }
            // An unknown name (`users.nmae`) is a misspelling, not a script: it reads as one.
            match script_names {
                Some(known) if !is_name => {
                    let names = crate::script::Names { known, message: false };
                    crate::script::compile(expression, crate::script::Form::Expression, &names)
                        .map(Var::Script)
                        .map_err(|error| TemplateError::Script(expression.to_owned(), error.to_string()))?
                }
                _ => return Err(TemplateError::Unknown(expression.to_owned())),
            }
        }
    };
    Ok(var)
}

fn call_arguments<'e>(expression: &'e str, function: &str) -> Option<Vec<&'e str>> {
    let inner = expression
        .strip_prefix(function)?
        .trim_start()
        .strip_prefix('(')?
        .strip_suffix(')')?;
    Some(inner.split(',').map(str::trim).collect())
}

/// Why a template does not compile.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("`${{` without a closing `}}` in `{0}`")]
    Unclosed(String),
    #[error("unknown variable `${{{0}}}`")]
    Unknown(String),
    #[error("`${{{0}}}` is not a valid call: write `{1}`")]
    BadCall(String, &'static str),
    #[error("`${{{0}}}` is not a valid script expression: {1}")]
    Script(String, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str) -> bool {
        name == "target" || name == "session"
    }

    #[test]
    fn renders_builtins_and_named_values() {
        let template = Template::compile("${target}/room?u=${vu}&i=${iteration}&$${x}", &known).unwrap();
        let named = crate::Values::from_iter([("target".to_owned(), "ws://h".to_owned())]);
        let scope = Scope {
            vu: 7,
            iteration: 3,
            vu_iteration: 0,
            agent: "a1",
            named: &named,
            local: None,
        };
        assert_eq!(template.render(&scope), "ws://h/room?u=7&i=3&${x}");
    }

    #[test]
    fn arithmetic_on_counters_and_local_values_first() {
        let template = Template::compile("${vu % 10}/${iteration + 1}/${vu*2}/${session}", &known).unwrap();
        let named = crate::Values::from_iter([("session".to_owned(), "run".to_owned())]);
        let local = crate::Values::from_iter([("session".to_owned(), "vu".to_owned())]);
        let scope = Scope {
            vu: 23,
            iteration: 4,
            vu_iteration: 0,
            agent: "",
            named: &named,
            local: Some(&local),
        };
        assert_eq!(template.render(&scope), "3/5/46/vu");
        assert!(matches!(
            Template::compile("${vu % 0}", &known),
            Err(TemplateError::BadCall(..))
        ));
        assert!(matches!(
            Template::compile("${vu % x}", &known),
            Err(TemplateError::BadCall(..))
        ));
    }

    #[test]
    fn literal_templates_borrow() {
        let template = Template::compile("plain text $ sign", &known).unwrap();
        assert_eq!(template.as_literal(), Some("plain text $ sign"));
    }

    #[test]
    fn random_calls_stay_in_range() {
        let template = Template::compile("${random_int(5, 6)}-${random_string(4)}", &known).unwrap();
        let named = crate::Values::default();
        let scope = Scope {
            vu: 0,
            iteration: 0,
            vu_iteration: 0,
            agent: "",
            named: &named,
            local: None,
        };
        let rendered = template.render(&scope).into_owned();
        let (number, text) = rendered.split_once('-').unwrap();
        assert!(number == "5" || number == "6");
        assert_eq!(text.len(), 4);
    }

    #[test]
    fn rejects_unknown_and_malformed() {
        assert_eq!(
            Template::compile("${nope}", &known),
            Err(TemplateError::Unknown("nope".to_owned()))
        );
        assert!(matches!(
            Template::compile("${vu", &known),
            Err(TemplateError::Unclosed(_))
        ));
        assert!(matches!(
            Template::compile("${random_int(9,1)}", &known),
            Err(TemplateError::BadCall(..))
        ));
    }
}
