use std::collections::HashMap;

use super::*;

fn known() -> Vec<String> {
    ["body", "users.secret", "users.name", "testserver.url", "odd-name"]
        .iter()
        .map(|name| name.to_string())
        .collect()
}

fn values<'a>(named: &'a HashMap<String, String>, local: &'a HashMap<String, String>) -> Scope<'a> {
    Scope {
        vu: 3,
        iteration: 2,
        vu_iteration: 1,
        agent: "a1",
        named,
        local: Some(local),
    }
}

fn statements(source: &str) -> Result<Script, CompileError> {
    compile(
        source,
        Form::Statements,
        &Names {
            known: &known(),
            message: false,
        },
    )
}

fn expression(source: &str) -> Result<Script, CompileError> {
    compile(
        source,
        Form::Expression,
        &Names {
            known: &known(),
            message: false,
        },
    )
}

#[test]
fn a_script_reads_values_and_sets_its_top_level_lets() {
    let script = statements(
        "let signature = hex(hmac_sha256(users.secret, body));\nlet next = vu * 10 + iteration;\nif true { let inner = 1; }",
    )
    .unwrap();
    assert_eq!(script.sets(), ["signature", "next"]);
    let named = HashMap::from([("users.secret".to_owned(), "Jefe".to_owned())]);
    let local = HashMap::from([("body".to_owned(), "what do ya want for nothing?".to_owned())]);
    let scope = ScriptScope::default();
    let texts = script.run(&scope, &values(&named, &local), None).unwrap();
    assert_eq!(
        texts,
        ["5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "32"]
    );
    let mut vars = HashMap::new();
    script.store(texts, &mut vars);
    assert_eq!(vars["next"], "32");
    assert_eq!(declared("let a = 1; const B = 2; { let c = 3; } let a = 4;"), ["a"]);
}

#[test]
fn unknown_names_and_syntax_errors_are_located_in_the_script() {
    let error = statements("let a = 1;\nlet b = bdy + a;").unwrap_err();
    assert_eq!((error.line, error.column), (Some(2), Some(9)), "{error}");
    assert!(error.message.contains("bdy"), "{error}");
    let error = expression("users.secret +").unwrap_err();
    assert_eq!(error.line, Some(1), "{error}");
    // A name a script cannot spell is not readable, and says so by being unknown.
    assert!(expression("odd").is_err());
    // The message is readable in rules only.
    assert!(expression("message").is_err());
    assert!(compile(
        "message.len() > 2",
        Form::Expression,
        &Names {
            known: &[],
            message: true
        }
    )
    .is_ok());
}

#[test]
fn the_sandbox_refuses_eval_and_modules_and_stops_runaway_scripts() {
    assert!(statements("eval(\"1\")").is_err());
    assert!(statements("import \"file\" as f;").is_err());
    let named = HashMap::new();
    let local = HashMap::new();
    let scope = ScriptScope::default();
    let error = statements("let n = 0; loop { n += 1; }")
        .unwrap()
        .run(&scope, &values(&named, &local), None)
        .unwrap_err();
    assert!(error.message.contains("operations"), "{error}");
    let error = statements("let s = \"x\"; loop { s += s; }")
        .unwrap()
        .run(&scope, &values(&named, &local), None)
        .unwrap_err();
    assert!(error.message.to_lowercase().contains("length"), "{error}");
    let error = statements("fn f(n) { f(n + 1) } let x = f(0);")
        .unwrap()
        .run(&scope, &values(&named, &local), None)
        .unwrap_err();
    assert!(error.message.contains("Stack overflow"), "{error}");
    // A deeply nested expression is refused when it compiles, not when it runs.
    let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
    assert!(expression(&deep).is_err());
}

#[test]
fn values_become_text_and_blobs_need_an_encoding() {
    let named = HashMap::from([("testserver.url".to_owned(), "ws://h".to_owned())]);
    let local = HashMap::new();
    let render = |source: &str| expression(source).unwrap().render(&values(&named, &local));
    assert_eq!(render("testserver.url + \"/x\"").unwrap(), "ws://h/x");
    assert_eq!(render("#{a: 1, b: [true, ()]}").unwrap(), r#"{"a":1,"b":[true,null]}"#);
    assert_eq!(render("1.5").unwrap(), "1.5");
    assert_eq!(render("json_get(`{\"t\":\"x\"}`, \"/t\")").unwrap(), "x");
    assert_eq!(render("body").unwrap(), "", "a value not set yet reads as empty text");
    assert!(render("sha256(\"a\")").unwrap_err().message.contains("hex"));
    let condition = expression("vu + 1").unwrap();
    let scope = ScriptScope::default();
    assert!(condition.condition(&scope, &values(&named, &local), None).is_err());
}

#[test]
fn rules_read_the_message_as_text_or_bytes() {
    let script = compile(
        "let kind = json_get(message, \"/type\");",
        Form::Statements,
        &Names {
            known: &[],
            message: true,
        },
    )
    .unwrap();
    let named = HashMap::new();
    let local = HashMap::new();
    let scope = ScriptScope::default();
    let texts = script
        .run(
            &scope,
            &values(&named, &local),
            Some(Incoming {
                bytes: br#"{"type":"welcome"}"#,
                kind: FrameKind::Text,
                event: None,
            }),
        )
        .unwrap();
    assert_eq!(texts, ["welcome"]);
    let length = compile(
        "message.len()",
        Form::Expression,
        &Names {
            known: &[],
            message: true,
        },
    )
    .unwrap();
    let value = length
        .eval(
            &scope,
            &values(&named, &local),
            Some(Incoming {
                bytes: &[1, 2, 3],
                kind: FrameKind::Binary,
                event: None,
            }),
        )
        .unwrap();
    assert_eq!(value.as_int().unwrap(), 3);
}
