//! Unit tests for compile errors, lookup rules, lambdas, escaping and nesting limits.

use serde_json::{json, Value};

use super::json::{render_with, JsonContext};
use crate::mustache::{
    escape_html, ErrorKind, MapLoader, Template, MAX_PARTIAL_DEPTH, MAX_PARTIAL_RECURSIONS,
    MAX_SECTION_DEPTH,
};

/// Compile `template` expecting an error; returns its Display text.
fn compile_error(template: &str) -> (ErrorKind, String) {
    match Template::compile(template, None, &MapLoader::new()) {
        Ok(_) => panic!("{template:?} compiled but should not"),
        Err(error) => (error.kind().clone(), error.to_string()),
    }
}

fn render(template: &str, data: &Value) -> String {
    render_with(template, data, &[], true)
}

#[test]
fn error_unclosed_tag_names_line() {
    let (kind, message) = compile_error("a\nb\nc {{name\nd");
    assert!(matches!(kind, ErrorKind::UnclosedTag { .. }), "{kind:?}");
    assert_eq!(message, "mustache: unclosed tag on line 3 (missing \"}}\")");
    let (_, message) = compile_error("x\n{{{raw}}");
    assert_eq!(
        message,
        "mustache: unclosed tag on line 2 (missing \"}}}\")"
    );
}

#[test]
fn error_unclosed_section_names_line() {
    let (kind, message) = compile_error("x\n\n{{#a}}\nbody\n");
    assert_eq!(kind, ErrorKind::UnclosedSection { name: "a".into() });
    assert_eq!(message, "mustache: unclosed section \"a\" opened on line 3");
}

#[test]
fn error_mismatched_close_names_both_lines() {
    let (kind, message) = compile_error("{{#a}}\n{{^b}}{{/b}}\n{{/c}}");
    assert!(matches!(
        kind,
        ErrorKind::MismatchedClose { open_line: 1, .. }
    ));
    assert_eq!(
        message,
        "mustache: closing tag \"c\" on line 3 does not match section \"a\" opened on line 1"
    );
}

#[test]
fn error_stray_close_names_line() {
    let (kind, message) = compile_error("ok\n{{/a}}");
    assert_eq!(kind, ErrorKind::StrayClose { name: "a".into() });
    assert_eq!(
        message,
        "mustache: closing tag \"a\" on line 2 has no open section"
    );
}

#[test]
fn error_bad_delimiters_name_line() {
    for template in [
        "\n{{=<% %> x=}}",
        "\n{{= =}}",
        "\n{{==}}",
        "\n{{=a= b=}}",
        "\n{{=<%=}}",
    ] {
        let (kind, message) = compile_error(template);
        assert!(
            matches!(kind, ErrorKind::BadDelimiter { .. }),
            "{template:?}"
        );
        assert!(message.contains("on line 2"), "{message}");
    }
    // A delimiter tag whose `=` closer is missing is reported as an unclosed tag.
    let (kind, _) = compile_error("{{=<% %>}}");
    assert!(matches!(kind, ErrorKind::UnclosedTag { .. }));
}

#[test]
fn error_empty_tag_names_line() {
    for template in [
        "a\n{{}}",
        "a\n{{ }}",
        "a\n{{#}}{{/}}",
        "a\n{{{ }}}",
        "a\n{{>}}",
    ] {
        let (kind, message) = compile_error(template);
        assert_eq!(kind, ErrorKind::EmptyTag, "{template:?}");
        assert_eq!(message, "mustache: empty tag name on line 2");
    }
}

#[test]
fn error_too_deep_names_line() {
    let ok = "{{#a}}".repeat(MAX_SECTION_DEPTH) + &"{{/a}}".repeat(MAX_SECTION_DEPTH);
    assert!(Template::compile(&ok, None, &MapLoader::new()).is_ok());
    let deep = "{{#a}}\n".repeat(MAX_SECTION_DEPTH + 5);
    let (kind, message) = compile_error(&deep);
    assert_eq!(
        kind,
        ErrorKind::TooDeep {
            limit: MAX_SECTION_DEPTH
        }
    );
    let line = MAX_SECTION_DEPTH + 1;
    assert!(message.contains(&format!("on line {line}")), "{message}");
}

#[test]
fn error_in_partial_names_partial() {
    let mut loader = MapLoader::new();
    loader.insert("p", "ok\n{{#x}}");
    let error = match Template::compile("{{>p}}", None, &loader) {
        Ok(_) => panic!("should fail"),
        Err(error) => error,
    };
    assert_eq!(error.line(), Some(2));
    assert_eq!(
        error.to_string(),
        "mustache: unclosed section \"x\" opened on line 2 in partial \"p\""
    );
}

#[test]
fn escaping_is_spec_exact() {
    let mut out = Vec::new();
    escape_html("a&b<c>d\"e'f/g`h=é".as_bytes(), &mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "a&amp;b&lt;c&gt;d&quot;e&#39;f/g`h=é"
    );
    let data = json!({"x": "<&>\"'", "n": 1.5});
    assert_eq!(
        render("{{x}}|{{{x}}}|{{&x}}|{{n}}", &data),
        "&lt;&amp;&gt;&quot;&#39;|<&>\"'|<&>\"'|1.5"
    );
}

#[test]
fn dotted_name_tries_whole_key_first() {
    let data = json!({"a.b": "whole", "a": {"b": "split", "c.d": "mid", "c": {"d": "deep"}}});
    assert_eq!(render("{{a.b}}", &data), "whole");
    assert_eq!(render("{{a.c.d}}", &data), "mid");
    assert_eq!(render("{{#a.b}}[{{.}}]{{/a.b}}", &data), "[whole]");
    assert_eq!(render_with("{{a.b}}", &data, &[], false), "split");
    assert_eq!(render_with("{{a.c.d}}", &data, &[], false), "deep");
    // The whole name is looked up on every stack level before splitting.
    let data = json!({"x.y": "outer", "inner": {"x": {"y": "split"}}});
    assert_eq!(render("{{#inner}}{{x.y}}{{/inner}}", &data), "outer");
}

#[test]
fn sections_follow_value_kinds() {
    let data = json!({"list": [1, 2], "map": {"k": "v"}, "s": "str", "empty": [], "no": false});
    assert_eq!(render("{{#list}}<{{.}}>{{/list}}", &data), "<1><2>");
    assert_eq!(render("{{#map}}{{k}}{{/map}}", &data), "v");
    assert_eq!(render("{{#s}}[{{.}}]{{/s}}", &data), "[str]");
    assert_eq!(
        render("{{#empty}}x{{/empty}}{{^empty}}e{{/empty}}", &data),
        "e"
    );
    assert_eq!(
        render("{{#no}}x{{/no}}{{^no}}n{{/no}}{{^s}}x{{/s}}", &data),
        "n"
    );
    assert_eq!(
        render("{{#missing}}x{{/missing}}{{^missing}}m{{/missing}}", &data),
        "m"
    );
}

#[test]
fn lambda_section_gets_raw_text_unparsed() {
    let data = json!({"f": {"$lambda": true}, "x": "X"});
    assert_eq!(
        render("<{{#f}}{{x}} & {{ y }}\n{{/f}}>", &data),
        "<<b>{{x}} & {{ y }}\n</b>>"
    );
    assert_eq!(
        render("{{f}}|{{{f}}}|{{^f}}no{{/f}}", &data),
        "&lt;b&gt;&amp;&lt;/b&gt;|<b>&</b>|"
    );
    // Raw text is the source between the tags, in the delimiters in force.
    assert_eq!(
        render("{{=| |=}}|#f|a{{b}}|x||/f|", &data),
        "<b>a{{b}}|x|</b>"
    );
}

#[test]
fn context_errors_propagate_unchanged() {
    let data = json!({"bad": {"$error": "boom"}});
    let template = Template::compile("a{{#bad}}x{{/bad}}", None, &MapLoader::new());
    let template = template.unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    let result = template.render(&JsonContext::new(), &&data, &mut out);
    assert_eq!(result, Err("boom".to_owned()));
    assert_eq!(out, b"a");
}

#[test]
fn missing_partial_renders_empty() {
    assert_eq!(render("[{{>nothing}}]", &json!({})), "[]");
}

#[test]
fn recursive_partial_stops_at_depth_limit() {
    let out = render_with("{{>p}}", &json!({}), &[("p", "x{{>p}}")], true);
    assert_eq!(out, "x".repeat(MAX_PARTIAL_DEPTH));
    // Data deeper than the limit: rendering stops expanding instead of overflowing the stack.
    let mut data = json!({"v": "leaf"});
    for _ in 0..(4 * MAX_PARTIAL_DEPTH) {
        data = json!({"n": data});
    }
    let out = render_with("{{>p}}", &data, &[("p", "({{#n}}{{>p}}{{/n}})")], true);
    assert_eq!(out.len(), 2 * MAX_PARTIAL_DEPTH);
    // Many nested sections inside a recursive partial hit the overall render depth limit.
    let nested = "{{#t}}".repeat(100) + "{{>q}}" + &"{{/t}}".repeat(100);
    let out = render_with("{{>q}}", &json!({"t": true}), &[("q", &nested)], true);
    assert_eq!(out, "");
}

#[test]
fn branching_recursive_partial_is_bounded() {
    // Without the recursion budget this would render 2^64 times.
    let out = render_with("{{>p}}", &json!({}), &[("p", "x{{>p}}{{>p}}")], true);
    assert!(out.len() > MAX_PARTIAL_DEPTH, "{}", out.len());
    assert!(out.len() <= MAX_PARTIAL_RECURSIONS + 1, "{}", out.len());
}

#[test]
fn partial_can_include_root_template_and_is_compiled_once() {
    let mut loader = MapLoader::new();
    loader.insert("a", "{{>b}}{{>a}}");
    loader.insert("b", "{{>a}}{{>b}}");
    let template = Template::compile("{{>a}}{{>b}}{{>a}}", None, &loader);
    let template = template.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(template.template_count(), 3);
}

#[test]
fn nested_standalone_partials_accumulate_indentation() {
    let partials = [
        (
            "outer",
            "o1\n  {{>inner}}\no2 {{>inline}}\n{{#t}}\n{{x}}\n{{/t}}",
        ),
        ("inner", "i1\n{{x}}\ni2\n"),
        ("inline", "l1\nl2"),
    ];
    let data = json!({"x": "a\nb", "t": true});
    let out = render_with("begin\n  {{>outer}}\nend\n", &data, &partials, true);
    assert_eq!(
        out,
        "begin\n  o1\n    i1\n    a\nb\n    i2\n  o2 l1\nl2\n  a\nb\nend\n"
    );
}
