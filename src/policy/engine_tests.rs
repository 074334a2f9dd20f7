//! Loading and evaluating real policy directories.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use super::PolicySet;
use crate::policy::{Decision, PolicyError};

use crate::policy::test_support::{PKG, dir_with, shipped, try_load as load};

fn eval_one(rego: &str, input: Value) -> Result<crate::policy::Verdict, PolicyError> {
    load(&[("p.rego", rego)]).unwrap().evaluate(&input)
}

#[test]
fn reads_rules_from_policy() {
    let rego = "package mcp.firewall\nallow if input.ok\ndeny contains \"no\" if input.bad\nmessage := \"m\" if input.bad\nhide if input.hide\n";
    assert_eq!(
        eval_one(rego, json!({"ok": true})).unwrap().decision,
        Decision::Allow
    );
    let v = eval_one(rego, json!({"ok": true, "bad": true, "hide": true})).unwrap();
    assert_eq!(
        v.decision,
        Decision::Deny {
            reasons: vec!["no".into()]
        }
    );
    assert_eq!(v.message.as_deref(), Some("m"));
    assert!(v.hide);
}

#[test]
fn undeclared_and_undefined_rules_take_defaults() {
    // Declares none of the decision rules at all.
    let v = eval_one("package mcp.firewall\nx := 1\n", json!({})).unwrap();
    assert!(v.default_hold && !v.hide && v.message.is_none());
    // Declared but undefined for this input.
    let v = eval_one(
        "package mcp.firewall\nallow if input.never\nhide if input.never\n",
        json!({}),
    )
    .unwrap();
    assert!(v.default_hold && !v.hide);
}

#[test]
fn wrong_rule_types_are_bad_results() {
    let cases = [
        ("deny := \"x\"", "deny"),
        ("approve := {1, 2}", "approve"),
        ("allow := \"yes\"", "allow"),
        ("hide := 1", "hide"),
        ("message := [\"x\"]", "message"),
        ("approval := true", "approval"),
    ];
    for (rule, name) in cases {
        let rego = format!("package mcp.firewall\n{rule}\n");
        match eval_one(&rego, json!({})) {
            Err(PolicyError::BadResult { rule, .. }) => assert_eq!(rule, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn expensive_loop_times_out() {
    let rego = "package mcp.firewall\nallow if {\n  count([x | some a in numbers.range(1, input.n); some b in numbers.range(1, input.n); x := a * b]) > 0\n}\n";
    let set = load(&[("p.rego", rego)]).unwrap();
    let started = Instant::now();
    let err = set.evaluate(&json!({"n": 100_000})).unwrap_err();
    assert!(
        matches!(err, PolicyError::Timeout { limit_ms: 250 }),
        "{err:?}"
    );
    // Not an assertion on speed: only that it was stopped, not left to run.
    assert!(started.elapsed().as_secs() < 30);
}

#[test]
fn compile_error_names_file_and_line() {
    let err = load(&[(
        "sub/broken.rego",
        "package mcp.firewall\n\nallow if {\n  input.x ==\n}\n",
    )])
    .unwrap_err();
    let PolicyError::Load { path, message } = &err else {
        panic!("{err:?}")
    };
    assert!(path.ends_with("sub/broken.rego"), "{path:?}");
    assert!(message.contains("sub/broken.rego:5:"), "{message}");
    assert!(err.to_string().contains("broken.rego"));
}

#[test]
fn missing_package_is_reported() {
    let err = load(&[("p.rego", "package other\nallow := true\n")]).unwrap_err();
    assert!(
        matches!(err, PolicyError::NoPackage { ref package } if package == PKG),
        "{err:?}"
    );
    let err = load(&[]).unwrap_err();
    assert!(matches!(err, PolicyError::NoPackage { .. }));
    let err = PolicySet::load_dir(Path::new("/nonexistent/policies"), PKG).unwrap_err();
    assert!(matches!(err, PolicyError::Load { .. }));
    let err = load(&[("p.rego", "package mcp.firewall\n")]);
    assert!(err.is_ok());
}

#[test]
fn package_name_must_be_a_plain_path() {
    let dir = dir_with(&[("p.rego", "package mcp.firewall\n")]);
    for bad in ["", "mcp..firewall", "mcp.fire-wall", "data.x[1]"] {
        let err = PolicySet::load_dir(dir.path(), bad).unwrap_err();
        assert!(matches!(err, PolicyError::NoPackage { .. }), "{bad}");
    }
}

#[test]
fn unsupported_builtin_is_named() {
    // Reached without input: caught at load.
    for builtin in [
        "crypto.sha256(\"x\")",
        "io.jwt.decode(\"x\")",
        "http.send({})",
    ] {
        let rego = format!("package mcp.firewall\ndeny contains \"x\" if {{ {builtin} }}\n");
        let err = load(&[("p.rego", &rego)]).unwrap_err();
        let name = builtin.split('(').next().unwrap();
        assert!(matches!(err, PolicyError::Load { .. }), "{err:?}");
        assert!(err.to_string().contains(name), "{err}");
        let says = if name == "http.send" {
            "is not available in mcp-firewall policies (regorus has only a stub"
        } else {
            "is unavailable: regorus, the Rego engine mcp-firewall embeds"
        };
        assert!(err.to_string().contains(&format!("{name} {says}")), "{err}");
    }
    // Reached only for some inputs: caught at evaluation.
    let rego =
        "package mcp.firewall\ndeny contains \"x\" if { input.jwt; io.jwt.decode(input.jwt) }\n";
    let set = load(&[("p.rego", rego)]).unwrap();
    let err = set.evaluate(&json!({"jwt": "a.b.c"})).unwrap_err();
    assert!(
        matches!(err, PolicyError::Eval { ref message }
            if message.contains("builtin io.jwt.decode is unavailable: regorus")),
        "{err:?}"
    );
    // regorus's http.send is a stub returning undefined; ours refuses.
    let rego = "package mcp.firewall\ndeny contains \"x\" if { input.u; not http.send({\"url\": input.u}) }\n";
    let set = load(&[("p.rego", rego)]).unwrap();
    let err = set
        .evaluate(&json!({"u": "https://example.com"}))
        .unwrap_err();
    assert!(
        matches!(err, PolicyError::Eval { ref message } if message.contains("http.send")),
        "{err:?}"
    );
}

#[test]
fn data_files_are_visible_under_data() {
    let rego = "package mcp.firewall\nallow if input.user in data.team.members\nallow if data.flags.open\n";
    let files = [
        ("p.rego", rego),
        ("team.json", "{\"team\": {\"members\": [\"alice\"]}}"),
        ("sub/flags.yaml", "flags:\n  open: false\n"),
    ];
    let set = load(&files).unwrap();
    assert_eq!(
        set.evaluate(&json!({"user": "alice"})).unwrap().decision,
        Decision::Allow
    );
    assert!(
        set.evaluate(&json!({"user": "mallory"}))
            .unwrap()
            .default_hold
    );
    assert!(load(&[("p.rego", rego), ("bad.json", "[1]")]).is_err());
}

#[test]
fn test_files_and_other_files_are_not_loaded() {
    let files = [
        ("p.rego", "package mcp.firewall\n"),
        ("p_test.rego", "package mcp.firewall\nallow := true\n"),
        ("README.md", "not rego"),
        (".hidden/x.rego", "this does not parse"),
    ];
    let set = load(&files).unwrap();
    let names: Vec<PathBuf> = set
        .files()
        .iter()
        .map(|f| f.file_name().unwrap().into())
        .collect();
    assert_eq!(names, vec![PathBuf::from("p.rego")]);
    assert!(set.evaluate(&json!({})).unwrap().default_hold);
}

#[test]
fn revision_is_stable_and_tracks_changes() {
    let dir = dir_with(&[("a.rego", "package mcp.firewall\n"), ("d.json", "{}")]);
    let first = PolicySet::load_dir(dir.path(), PKG).unwrap();
    let again = PolicySet::load_dir(dir.path(), PKG).unwrap();
    assert!(first.revision().starts_with("sha256:") && first.revision().len() == 7 + 64);
    assert_eq!(first.revision(), again.revision());
    std::fs::write(dir.path().join("d.json"), "{\"x\": 1}").unwrap();
    let changed = PolicySet::load_dir(dir.path(), PKG).unwrap();
    assert_ne!(first.revision(), changed.revision());
    std::fs::rename(dir.path().join("a.rego"), dir.path().join("b.rego")).unwrap();
    let renamed = PolicySet::load_dir(dir.path(), PKG).unwrap();
    assert_ne!(changed.revision(), renamed.revision());
    assert_eq!(renamed.package(), PKG);
}

fn call(tool: &str, annotations: Value, arguments: Value) -> Value {
    json!({
        "version": 1, "method": "tools/call", "server": "fs", "server_trusted": true,
        "tool": {"name": tool, "exposed_name": format!("fs__{tool}"), "annotations": annotations},
        "arguments": arguments,
        "principal": {"id": "alice", "source": "os", "claims": {}},
    })
}

#[test]
fn shipped_policies_interplay() {
    let set = shipped();
    let ro = json!({"readOnlyHint": true});
    let destructive = json!({"destructiveHint": true});
    let decide = |input: Value| set.evaluate(&input).unwrap();

    assert_eq!(
        decide(call("read_file", ro.clone(), json!({"path": "/etc/hosts"}))).decision,
        Decision::Allow
    );
    let v = decide(call("read_file", ro, json!({"q": "AKIAIOSFODNN7EXAMPLE"})));
    assert_eq!(v.decision.label(), "deny");
    let v = decide(call(
        "write_file",
        destructive.clone(),
        json!({"path": "/srv/a"}),
    ));
    assert!(matches!(v.decision, Decision::Approve { .. }) && !v.default_hold);
    let v = decide(call("write_file", destructive, json!({"path": "/srv2/a"})));
    assert_eq!(v.decision.label(), "deny");
    assert!(decide(call("run", json!({}), json!({}))).default_hold);
    let list =
        json!({"method": "tools/list", "server": "fs", "tool": {"name": "x"}, "arguments": {}});
    let v = decide(list);
    assert!(v.decision == Decision::Allow && !v.hide);
}

/// Prints the cost of one `evaluate` on the shipped policies; run with
/// `cargo test --release --lib policy::engine::tests::bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_evaluate_shipped() {
    let set = shipped();
    let input = call(
        "write_file",
        json!({"destructiveHint": true}),
        json!({"path": "/srv/a/b.txt", "content": "hello world"}),
    );
    let n = 5_000;
    for _ in 0..100 {
        let _ = set.evaluate(&input).unwrap();
    }
    let started = Instant::now();
    for _ in 0..n {
        let _ = set.evaluate(&input).unwrap();
    }
    println!(
        "evaluate (one adapter rule): {:.1} us",
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let rego_input: regorus::Value = serde::Deserialize::deserialize(&input).unwrap();
    let started = Instant::now();
    for _ in 0..n {
        let mut engine = set.engine.clone();
        engine.set_input(rego_input.clone());
        for rule in super::RULES {
            // Undeclared rules are an error ("not a valid rule path") here.
            let _ = engine.eval_rule(format!("data.mcp.firewall.{rule}"));
        }
    }
    let six = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    for name in ["main.rego", "filesystem.rego", "secrets.rego"] {
        let dir = dir_with(&[
            (
                name,
                &std::fs::read_to_string(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("policies")
                        .join(name),
                )
                .unwrap(),
            ),
            ("data.json", "{}"),
        ]);
        let one = PolicySet::load_dir(dir.path(), PKG).unwrap();
        let started = Instant::now();
        for _ in 0..n {
            let _ = one.evaluate(&input);
        }
        println!(
            "  {name} alone: {:.1} us",
            started.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
    println!("six eval_rule calls:         {six:.1} us");
}

#[test]
#[ignore]
fn bench_breakdown() {
    let set = shipped();
    let input = call(
        "write_file",
        json!({"destructiveHint": true}),
        json!({"path": "/srv/a/b.txt"}),
    );
    let rego_input: regorus::Value = serde::Deserialize::deserialize(&input).unwrap();
    let n = 5_000;
    let time = |label: &str, f: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..n {
            f();
        }
        println!(
            "{label}: {:.2} us",
            started.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    };
    time("clone", &mut || drop(set.engine.clone()));
    time("deserialize input", &mut || {
        drop(<regorus::Value as serde::Deserialize>::deserialize(&input).unwrap())
    });
    time("clone+ready", &mut || {
        let mut e = set.engine.clone();
        e.set_input(rego_input.clone());
        e.eval_rule(super::adapter_rule("ready")).unwrap();
    });
    let mut response = input.clone();
    response["phase"] = json!("response");
    response["result"] = json!({"content": [{"type": "text", "text": "ok"}], "findings": []});
    time("response phase", &mut || {
        drop(set.evaluate(&response).unwrap())
    });
    time("clone+verdict", &mut || {
        let mut e = set.engine.clone();
        e.set_input(rego_input.clone());
        e.eval_rule(super::adapter_rule("verdict")).unwrap();
    });
    let helpers = [
        "write_tool",
        "path_args",
        "argument_strings",
        "allowed_roots",
        "list_methods",
    ];
    for rule in super::RULES.iter().chain(helpers.iter()) {
        time(rule, &mut || {
            let mut e = set.engine.clone();
            e.set_input(rego_input.clone());
            let _ = e.eval_rule(format!("data.mcp.firewall.{rule}"));
        });
    }
}

#[test]
fn may_hide_is_false_only_when_nothing_but_the_default_mentions_hide() {
    assert!(!shipped().may_hide(), "the shipped library hides nothing");
    for (rego, expected) in [
        (
            "package mcp.firewall\ndefault hide := false\n# hide if { true }\n",
            false,
        ),
        (
            "package mcp.firewall\nhide if input.tool.name == \"x\"\n",
            true,
        ),
        ("package mcp.firewall\n  hide := true\n", true),
        ("package mcp.firewall\nx := 1 # then hide\n", true),
        ("package mcp.firewall\nhidex := 1\nunhide := 2\n", false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.rego"), rego).unwrap();
        let set = PolicySet::load_dir(dir.path(), "mcp.firewall").unwrap();
        assert_eq!(set.may_hide(), expected, "{rego}");
    }
}

#[test]
fn the_response_phase_evaluates_only_deny_redact_and_warn() {
    // `approve` and `allow` mean nothing for a result; evaluating them again
    // per result was a second full decision. The division by zero proves
    // the approve rule is not run in the response phase (an evaluated rule
    // that errors is an error, and withholds the result).
    let set = load(&[(
        "p.rego",
        "package mcp.firewall\nallow := true\n\
         approve contains x if x := sprintf(\"%v\", [1 / input.zero])\n\
         redact contains \"jwt\" if input.phase == \"response\"\n\
         warn contains \"careful\" if input.phase == \"response\"\n\
         deny contains \"withheld\" if input.result.bad\n",
    )])
    .unwrap();
    let response = json!({"phase": "response", "zero": 0, "result": {"content": []}});
    let v = set.evaluate(&response).unwrap();
    assert_eq!(v.redact, vec!["jwt".to_string()]);
    assert_eq!(v.warn, vec!["careful".to_string()]);
    assert!(!matches!(v.decision, Decision::Deny { .. }));
    let bad = json!({"phase": "response", "zero": 0, "result": {"bad": true}});
    assert_eq!(
        set.evaluate(&bad).unwrap().decision,
        Decision::Deny {
            reasons: vec!["withheld".into()]
        }
    );
    // The request phase still reads approve (and its error), not redact.
    let request = json!({"zero": 0});
    assert!(set.evaluate(&request).is_err());
    let v = set.evaluate(&json!({})).unwrap();
    assert_eq!(v.decision, Decision::Allow);
    assert!(v.redact.is_empty() && v.warn.is_empty());
}

/// Why decisions do not run on regorus's register VM (RVM), which decides
/// the shipped library about three times faster: the VM treats an error
/// inside a rule body (here a division by zero; equally `upper(5)`) as the
/// body not matching, even with strict builtin errors, so a `deny` rule
/// that errors would silently not deny. The interpreter fails the whole
/// evaluation, which the firewall turns into a refusal. When this test
/// fails after a regorus upgrade, the VM propagates such errors: revisit
/// the compiled engine (docs/performance.md, "The compiled engine").
#[test]
fn regorus_vm_still_swallows_errors_in_rule_bodies() {
    use regorus::languages::rego::compiler::Compiler;
    let mut engine = regorus::Engine::new();
    engine
        .add_policy(
            "p.rego".into(),
            "package p\n\ndeny contains x if x := 1 / input.zero\n".into(),
        )
        .unwrap();
    let input = regorus::Value::from_json_str(r#"{"zero": 0}"#).unwrap();
    engine.set_input(input.clone());
    assert!(engine.eval_rule("data.p.deny".into()).is_err());
    let entry: std::sync::Arc<str> = "data.p.deny".into();
    let compiled = engine.compile_with_entrypoint(&entry).unwrap();
    let program = Compiler::compile_from_policy(&compiled, &[&entry]).unwrap();
    let mut vm = regorus::rvm::RegoVM::new_with_policy(compiled);
    vm.load_program(program);
    vm.set_strict_builtin_errors(true);
    vm.set_input(input);
    let deny = vm.execute_entry_point_by_name("data.p.deny").unwrap();
    assert_eq!(
        deny,
        regorus::Value::new_set(),
        "the VM now reports the error"
    );
}

/// Inputs unlike each other in every field a policy could read.
fn varied_inputs() -> Vec<Value> {
    vec![
        json!({}),
        json!({"method": "tools/call", "tool": {"name": "echo"}, "arguments": {"text": "hi"}}),
        json!({"method": "tools/call", "tool": {"name": "rm"}, "arguments": {"text": "forbidden", "n": 3}}),
        json!({"method": "tools/list", "tool": {"name": "echo"}, "x": true}),
        json!({"phase": "response", "method": "tools/call", "result": {"content": [], "findings": [{"kind": "jwt"}]}}),
    ]
}

#[test]
fn a_policy_that_reads_nothing_of_the_input_is_decided_once_at_load() {
    let policies = [
        ("allow := true\n", true, true),
        (
            "deny contains \"closed for maintenance\" if true\nmessage := \"try later\"\n",
            true,
            true,
        ),
        (
            "approve contains \"everything is reviewed\" if true\napproval := {\"approvers\": 2}\n",
            true,
            true,
        ),
        // Data and deterministic builtins are constant too.
        (
            "limits := {\"a\": 1}\nallow if count(limits) == 1\nwarn contains upper(\"note\") if true\n",
            true,
            true,
        ),
        // The request rules read nothing; the result rules read the result.
        (
            "allow := true\nredact contains f.kind if { some f in input.result.findings }\n",
            true,
            false,
        ),
        // A deny rule that cannot see the result is left out of the
        // response phase, which then reads nothing either.
        (
            "allow := true\ndeny contains \"no\" if input.arguments.text == \"forbidden\"\n",
            false,
            true,
        ),
    ];
    for (body, request, response) in policies {
        let set = load(&[("p.rego", &format!("package mcp.firewall\n{body}"))]).unwrap();
        assert_eq!(set.constant_verdict().is_some(), request, "{body}");
        assert_eq!(set.constant_response().is_some(), response, "{body}");
        for mut input in varied_inputs() {
            let decided = |input: &Value| format!("{:?}", set.evaluate(input));
            let whole = |input: &Value| format!("{:?}", set.evaluate_unspecialized(input));
            assert_eq!(decided(&input), whole(&input), "{body}: {input}");
            input["phase"] = json!("response");
            assert_eq!(decided(&input), whole(&input), "{body}: {input}");
        }
    }
}

/// Every way a rule can read the input, or change between two calls, keeps
/// the policy evaluated per call: each of these decides two inputs apart.
#[test]
fn any_reading_of_the_input_keeps_the_policy_evaluated_per_call() {
    let readers = [
        "deny contains \"no\" if input.arguments.text == \"forbidden\"",
        "deny contains \"no\" if input[\"arguments\"][\"text\"] == \"forbidden\"",
        "deny contains \"no\" if { k := \"arguments\"; input[k].text == \"forbidden\" }",
        "deny contains \"no\" if { x := input; x.arguments.text == \"forbidden\" }",
        "deny contains \"no\" if object.get(input, [\"arguments\", \"text\"], \"\") == \"forbidden\"",
        "deny contains \"no\" if { walk(input, [_, v]); v == \"forbidden\" }",
        "deny contains \"no\" if is_forbidden\nis_forbidden if input.arguments.text == \"forbidden\"",
        "deny contains \"no\" if forbidden(\"forbidden\")\nforbidden(t) if input.arguments.text == t",
        "import input.arguments as args\ndeny contains \"no\" if args.text == \"forbidden\"",
        "import input\ndeny contains \"no\" if input.arguments.text == \"forbidden\"",
        "deny contains \"no\" if data.helpers.forbidden",
        "deny contains \"no\" if data.helpers[\"forbidden\"]",
        "deny contains \"no\" if { some name, v in data.helpers; name == \"forbidden\"; v }",
        "deny contains \"no\" if { p := \"helpers\"; data[p].forbidden }",
        "deny contains \"no\" if data.mcp.firewall.is_forbidden with input.arguments.text as input.arguments.text\nis_forbidden if input.arguments.text == \"forbidden\"",
    ];
    let helpers = "package helpers\nforbidden if input.arguments.text == \"forbidden\"\n";
    let call = |text: &str| json!({"method": "tools/call", "arguments": {"text": text}});
    for reader in readers {
        let body = format!("package mcp.firewall\n{reader}\nallow := true\n");
        let set = load(&[("p.rego", &body), ("helpers.rego", helpers)]).unwrap();
        assert!(set.constant_verdict().is_none(), "{reader}");
        let forbidden = set.evaluate(&call("forbidden")).unwrap();
        assert!(
            matches!(forbidden.decision, Decision::Deny { .. }),
            "{reader}"
        );
        assert_eq!(
            set.evaluate(&call("fine")).unwrap().decision,
            Decision::Allow,
            "{reader}"
        );
    }
    // Builtins whose answer changes from call to call.
    for clock in [
        "allow if time.now_ns() > 0",
        "allow if rand.intn(\"x\", 2) >= 0",
    ] {
        let set = load(&[("p.rego", &format!("package mcp.firewall\n{clock}\n"))]).unwrap();
        assert!(set.constant_verdict().is_none(), "{clock}");
        assert_eq!(set.evaluate(&json!({})).unwrap().decision, Decision::Allow);
    }
}

/// A policy whose every evaluation fails (a wrong type, the time limit)
/// is not made constant: each call is evaluated and refused with the error.
#[test]
fn a_constant_policy_that_fails_is_evaluated_and_fails_per_call() {
    for body in ["allow := \"yes\"\n", "deny contains 7 if true\n"] {
        let set = load(&[("p.rego", &format!("package mcp.firewall\n{body}"))]).unwrap();
        assert!(set.constant_verdict().is_none(), "{body}");
        assert!(set.evaluate(&json!({})).is_err(), "{body}");
    }
}

/// An engine holding `modules` (file name, text) and `data`, as the loader
/// builds one.
fn engine_with(modules: &[(&str, &str)], data: Value) -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    for (name, text) in modules {
        engine
            .add_policy(name.to_string(), text.to_string())
            .unwrap();
    }
    let data = regorus::Value::from_json_str(&data.to_string()).unwrap();
    engine.add_data(data).unwrap();
    engine
}

#[test]
fn the_adapter_looks_up_only_rules_the_policy_can_define() {
    // A rule, a package below the decision package, data at its path.
    let mut engine = engine_with(
        &[
            (
                "a.rego",
                "package mcp.firewall\ndeny contains \"no\" if input.bad\nhelper := 1\n",
            ),
            ("b.rego", "package mcp.firewall.approval\napprovers := 2\n"),
            ("c.rego", "package other\nallow := true\n"),
        ],
        json!({"mcp": {"firewall": {"message": "from data"}}}),
    );
    let defined = super::defined_rules(&mut engine, &["mcp", "firewall"]).unwrap();
    let names: Vec<&str> = defined.iter().map(String::as_str).collect();
    assert_eq!(names, ["approval", "deny", "helper", "message"]);
    let text = super::adapter_text(PKG, Some(&defined), &Default::default());
    for rule in ["deny", "message", "approval"] {
        assert!(
            text.contains(&format!("data.{PKG}.{rule}]")),
            "{rule}: {text}"
        );
    }
    for rule in ["allow", "hide", "approve", "warn"] {
        assert!(
            !text.contains(&format!("data.{PKG}.{rule}]")),
            "{rule}: {text}"
        );
    }
    // A rule of an enclosing package whose path leads into the decision
    // package could define any of its names: every rule is looked up.
    let mut engine = engine_with(
        &[(
            "a.rego",
            "package mcp\nfirewall.deny contains \"x\" if true\n",
        )],
        json!({}),
    );
    assert!(super::defined_rules(&mut engine, &["mcp", "firewall"]).is_none());
    assert!(
        super::adapter_text(PKG, None, &Default::default()).contains(&format!("data.{PKG}.allow]"))
    );
    // The shipped library defines neither `message` nor `approval`.
    let mut engine = engine_with(&[], json!({}));
    for (name, text) in shipped_sources() {
        engine.add_policy(name, text).unwrap();
    }
    let defined = super::defined_rules(&mut engine, &["mcp", "firewall"]).unwrap();
    assert!(defined.contains("deny") && defined.contains("redact"));
    assert!(!defined.contains("message") && !defined.contains("approval"));
}

/// The shipped library's policy files (tests excluded), name and text.
fn shipped_sources() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rego"))
        .filter(|p| !p.to_string_lossy().ends_with("_test.rego"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn rules_defined_by_data_a_sub_package_or_an_enclosing_package_are_read() {
    // Were any of these left out of the adapter, its rule would read as
    // undefined: a message lost, an approval's obligations dropped, a deny
    // not seen.
    let set = crate::policy::test_support::load(&[
        (
            "p.rego",
            "package mcp.firewall\napprove contains \"held\" if input.hold\n",
        ),
        ("q.rego", "package mcp.firewall.approval\napprovers := 2\n"),
        (
            "data.json",
            r#"{"mcp": {"firewall": {"message": "from data"}}}"#,
        ),
    ]);
    let held = set.evaluate(&json!({"hold": true})).unwrap();
    assert_eq!(held.message.as_deref(), Some("from data"));
    assert_eq!(
        held.decision,
        Decision::Approve {
            reasons: vec!["held".into()],
            obligations: Some(json!({"approvers": 2})),
        }
    );
    let set = crate::policy::test_support::load(&[
        ("p.rego", "package mcp.firewall\nx := 1\n"),
        (
            "q.rego",
            "package mcp\nfirewall.deny contains \"from mcp\" if input.bad\n",
        ),
    ]);
    assert_eq!(
        set.evaluate(&json!({"bad": true})).unwrap().decision,
        Decision::Deny {
            reasons: vec!["from mcp".into()]
        }
    );
}

#[test]
fn obligations_from_a_package_named_after_the_rule_are_read_from_the_input() {
    // `data.mcp.firewall.approval` is this package's rules; it reads the
    // input, so the decision cannot be known at load (it was: `{}`, the
    // two-approver requirement dropped).
    let set = crate::policy::test_support::load(&[
        (
            "p.rego",
            "package mcp.firewall\napprove contains \"held\" if true\n",
        ),
        (
            "q.rego",
            "package mcp.firewall.approval\napprovers := input.n\n",
        ),
    ]);
    assert_eq!(
        set.evaluate(&json!({"n": 2})).unwrap().decision,
        Decision::Approve {
            reasons: vec!["held".into()],
            obligations: Some(json!({"approvers": 2})),
        }
    );
}
