use super::*;

fn known() -> Vec<String> {
    ["body", "users.secret", "users.name", "testserver.url", "odd-name"]
        .iter()
        .map(|name| name.to_string())
        .collect()
}

fn values<'a>(named: &'a crate::Values, local: &'a crate::Values) -> Scope<'a> {
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
    let named = crate::Values::from_iter([("users.secret".to_owned(), "Jefe".to_owned())]);
    let local = crate::Values::from_iter([("body".to_owned(), "what do ya want for nothing?".to_owned())]);
    let scope = ScriptScope::default();
    let sets = script.run(&scope, &values(&named, &local), None).unwrap();
    assert_eq!(
        sets.texts(),
        ["5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "32"]
    );
    let mut vars = crate::Values::from_iter([("next".to_owned(), "an older and longer value".to_owned())]);
    sets.store(&mut vars);
    assert_eq!(vars["next"], "32");
    assert_eq!(
        vars["signature"],
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
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
    let named = crate::Values::default();
    let local = crate::Values::default();
    let scope = ScriptScope::default();
    let error = statements("let n = 0; loop { n += 1; }")
        .unwrap()
        .run(&scope, &values(&named, &local), None)
        .err()
        .unwrap();
    assert!(error.message.contains("operations"), "{error}");
    let error = statements("let s = \"x\"; loop { s += s; }")
        .unwrap()
        .run(&scope, &values(&named, &local), None)
        .err()
        .unwrap();
    assert!(error.message.to_lowercase().contains("length"), "{error}");
    let error = statements("fn f(n) { f(n + 1) } let x = f(0);")
        .unwrap()
        .run(&scope, &values(&named, &local), None)
        .err()
        .unwrap();
    assert!(error.message.contains("Stack overflow"), "{error}");
    // A deeply nested expression is refused when it compiles, not when it runs.
    let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
    assert!(expression(&deep).is_err());
}

#[test]
fn values_become_text_and_blobs_need_an_encoding() {
    let named = crate::Values::from_iter([("testserver.url".to_owned(), "ws://h".to_owned())]);
    let local = crate::Values::default();
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
    let named = crate::Values::default();
    let local = crate::Values::default();
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
        .unwrap()
        .texts();
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

/// A VU's runtime is kept between calls, but every call starts afresh: its own operations
/// budget, its own functions, and nothing of a call that failed.
#[test]
fn every_call_in_a_kept_runtime_has_its_own_limits_and_functions() {
    let named = crate::Values::default();
    let local = crate::Values::default();
    let scope = ScriptScope::default();
    // About 60% of the operations a call may use: twice in one call would be stopped, once
    // per call never is.
    let busy = statements("let n = 0; for i in 0..20000 { n += 1; }").unwrap();
    for _ in 0..3 {
        assert_eq!(
            busy.run(&scope, &values(&named, &local), None).unwrap().texts(),
            ["20000"]
        );
    }
    let twice = statements("let n = 0; for i in 0..40000 { n += 1; }").unwrap();
    let error = twice.run(&scope, &values(&named, &local), None).err().unwrap();
    assert!(error.message.contains("operations"), "{error}");
    assert_eq!(
        busy.run(&scope, &values(&named, &local), None).unwrap().texts(),
        ["20000"]
    );
    // Two scripts with a function of the same name and arguments, in turns (a resolution is
    // cached from its second use on): each calls its own.
    let plus = statements("fn f(x) { x + 1 } let a = f(1);").unwrap();
    let times = statements("fn f(x) { x * 10 } let a = f(1);").unwrap();
    let engine_only = statements("let a = hex(\"ab\") + to_string(vu);").unwrap();
    for _ in 0..3 {
        assert_eq!(plus.run(&scope, &values(&named, &local), None).unwrap().texts(), ["2"]);
        assert_eq!(
            times.run(&scope, &values(&named, &local), None).unwrap().texts(),
            ["10"]
        );
        assert_eq!(
            engine_only.run(&scope, &values(&named, &local), None).unwrap().texts(),
            ["61623"]
        );
    }
    // A runaway script is stopped after calls that kept the runtime, and the next call runs.
    let runaway = statements("let n = 0; loop { n += 1; }").unwrap();
    assert!(runaway.run(&scope, &values(&named, &local), None).is_err());
    assert_eq!(plus.run(&scope, &values(&named, &local), None).unwrap().texts(), ["2"]);
    // The same script again reads the values of its own call, not those of the previous one.
    let sum = statements("let a = iteration + parse_int(body); let iteration = 0;").unwrap();
    for round in 0..3u64 {
        let body = crate::Values::from_iter([("body".to_owned(), (round * 100).to_string())]);
        let scope_values = Scope {
            iteration: round,
            ..values(&named, &body)
        };
        assert_eq!(
            sum.run(&scope, &scope_values, None).unwrap().texts(),
            [(round * 101).to_string(), "0".to_owned()]
        );
    }
    // Text kept from the previous call of the same script is what the VU holds now: changed
    // by the VU, or changed in place by the script's previous call, it reads afresh.
    let appends =
        statements("body += \"!\"; users.name += \"?\"; users.extra = 1; let seen = body + users.name + users.len();")
            .unwrap();
    let users = crate::Values::from_iter([("users.name".to_owned(), "ann".to_owned())]);
    for (round, text) in ["a", "a", "b", "b"].into_iter().enumerate() {
        let body = crate::Values::from_iter([("body".to_owned(), text.to_owned())]);
        let scope_values = Scope {
            iteration: round as u64,
            ..values(&users, &body)
        };
        assert_eq!(
            appends.run(&scope, &scope_values, None).unwrap().texts(),
            [format!("{text}!ann?3")],
            "round {round}"
        );
    }
    let reads = statements("let copy = body + users.name;").unwrap();
    for (round, (text, name)) in [("a", "ann"), ("a", "ann"), ("b", "ann"), ("b", "bo")]
        .into_iter()
        .enumerate()
    {
        let users = crate::Values::from_iter([("users.name".to_owned(), name.to_owned())]);
        let body = crate::Values::from_iter([("body".to_owned(), text.to_owned())]);
        assert_eq!(
            reads.run(&scope, &values(&users, &body), None).unwrap().texts(),
            [format!("{text}{name}")],
            "round {round}"
        );
    }
    // Values of an earlier call are gone: a call sees only what it reads.
    let earlier = statements("let a = 1;").unwrap();
    let _ = earlier.run(&scope, &values(&named, &local), None).unwrap();
    let reads = expression("vu").unwrap();
    assert_eq!(
        reads.eval(&scope, &values(&named, &local), None).unwrap().as_int(),
        Ok(3)
    );
}

#[test]
fn what_a_script_sets_is_stored_as_templates_write_it() {
    let named = crate::Values::default();
    let local = crate::Values::default();
    let scope = ScriptScope::default();
    let script = statements(
        "let i = -42; let b = vu > 1; let f = 1.5; let u = (); let s = \"x\"; let m = #{a: [1, ()]}; let c = 'z';",
    )
    .unwrap();
    let mut vars = crate::Values::from_iter([("i".to_owned(), "a longer value than -42".to_owned())]);
    script
        .run(&scope, &values(&named, &local), None)
        .unwrap()
        .store(&mut vars);
    let stored: Vec<&str> = script.sets().iter().map(|name| vars[name].as_str()).collect();
    assert_eq!(stored, ["-42", "true", "1.5", "", "x", r#"{"a":[1,null]}"#, "z"]);
    // A blob has no text form: the script fails and stores nothing.
    let blob = statements("let s = \"new\"; let digest = sha256(\"a\");").unwrap();
    let error = blob.run(&scope, &values(&named, &local), None).err().unwrap();
    assert!(error.message.contains("hex"), "{error}");
    assert_eq!(vars["s"], "x");
}

#[test]
fn anonymous_functions_take_what_they_need_as_arguments() {
    // Without closures, an anonymous function sees only its parameters: a script variable in
    // its body is a located compile error, passing it as an argument works.
    let error = statements("let offset = 2; let add = |x| x + offset; let a = add.call(1);")
        .err()
        .unwrap();
    assert_eq!(error.unknown.as_deref(), Some("offset"), "{error}");
    assert_eq!((error.line, error.column), (Some(1), Some(35)), "{error}");
    let script = statements(
        "let offset = 2; let add = |x, by| x + by; let a = add.call(vu, offset); let doubled = [1, 2].map(|x| x * 2);",
    )
    .unwrap();
    let named = crate::Values::default();
    let local = crate::Values::default();
    let scope = ScriptScope::default();
    let sets = script.run(&scope, &values(&named, &local), None).unwrap();
    assert_eq!(sets.texts()[2..], ["5", "[2,4]"]);
}

#[test]
fn a_set_value_the_script_did_not_reach_is_the_one_it_read_at_every_call() {
    // What a script set is taken out of its scope: when a call returns before its `let`, the
    // value is the one the call read, and the next call reads it afresh.
    let script = statements("if iteration > 0 { return; } let body = body + \"!\";").unwrap();
    let named = crate::Values::default();
    let scope = ScriptScope::default();
    let mut vars = crate::Values::from_iter([("body".to_owned(), "a".to_owned())]);
    for (round, expected) in ["a!", "a!", "a!"].into_iter().enumerate() {
        let sets = script
            .run(
                &scope,
                &Scope {
                    iteration: round as u64,
                    ..values(&named, &vars)
                },
                None,
            )
            .unwrap();
        sets.store(&mut vars);
        assert_eq!(vars["body"], expected, "round {round}");
    }
}

#[test]
fn a_function_reading_from_outside_itself_is_a_located_error() {
    // A scenario value in an anonymous function or a `fn`: no closure carries it in.
    for (source, name, column) in [
        ("let doubled = [1, 2].map(|x| x + vu);", "vu", 34),
        ("fn f(x) { x + body }\nlet a = f(1);", "body", 15),
        ("let pairs = [1].map(|x| users.name + x);", "users", 25),
    ] {
        let error = statements(source).err().unwrap_or_else(|| panic!("{source} compiled"));
        assert!(
            error.message.contains(&format!("cannot use `{name}`")),
            "{source}: {error}"
        );
        assert_eq!((error.line, error.column), (Some(1), Some(column)), "{source}: {error}");
    }
    // Of two, the first in the text is named, whatever order the functions are kept in.
    let error = statements("fn b() { body }\nfn a() { agent }\nlet x = a() + b();")
        .err()
        .unwrap();
    assert_eq!((error.line, error.column), (Some(1), Some(10)), "{error}");
    // Parameters, a function's own variables, loops, blocks, other functions and the script's
    // top-level constants (as `global::NAME`) are its own to read.
    let script = statements(
        "const K = 3;\nfn g(x) { let y = x * global::K; for i in 0..2 { y += i; } if y > 0 { let z = y; z } else { 0 } }\nfn h(x) { g(x) + 1 }\nlet a = h(vu);\nlet b = [1, 2].map(|x| g(x)).len();",
    )
    .unwrap();
    let named = crate::Values::default();
    let local = crate::Values::default();
    let scope = ScriptScope::default();
    assert_eq!(
        script.run(&scope, &values(&named, &local), None).unwrap().texts(),
        ["11", "2"]
    );
}

#[test]
fn a_constant_declared_after_a_let_of_the_same_name_is_what_is_stored() {
    let script = statements("let a = [1]; const a = 2;").unwrap();
    let named = crate::Values::default();
    let local = crate::Values::default();
    let scope = ScriptScope::default();
    assert_eq!(
        script.run(&scope, &values(&named, &local), None).unwrap().texts(),
        ["2"]
    );
}

#[test]
fn scripts_reading_the_same_values_in_turns_each_see_the_vu_s_values() {
    // Two scripts with the same reads share the kept scope's layout: what one changed in place
    // is not what the other reads.
    let append = statements("body += \"!\"; let a = body + iteration;").unwrap();
    let plain = statements("let b = body + iteration;").unwrap();
    let named = crate::Values::default();
    let scope = ScriptScope::default();
    for round in 0..3u64 {
        let local = crate::Values::from_iter([("body".to_owned(), format!("x{round}"))]);
        let current = Scope {
            iteration: round,
            ..values(&named, &local)
        };
        assert_eq!(
            append.run(&scope, &current, None).unwrap().texts(),
            [format!("x{round}!{round}")]
        );
        assert_eq!(
            plain.run(&scope, &current, None).unwrap().texts(),
            [format!("x{round}{round}")]
        );
        assert_eq!(
            plain.run(&scope, &current, None).unwrap().texts(),
            [format!("x{round}{round}")]
        );
        // The scope was filled once, by the first script, and only brought up to date since.
        let cell = scope.0.borrow();
        let filled = cell
            .as_ref()
            .and_then(|runtime| runtime.filled.as_ref())
            .expect("filled");
        assert!(Arc::ptr_eq(&filled.0, &append.0));
    }
}
