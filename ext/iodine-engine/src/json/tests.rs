//! The parser against JSONTestSuite and hand-made cases, the tape, and the writers.

use std::path::PathBuf;

use super::*;

/// A parsed value, for the tests.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Big(String),
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

/// Builds a [`Value`] tree (keys are pushed on the stack as strings before their values).
#[derive(Default)]
struct Tree {
    stack: Vec<Value>,
}

impl Sink for Tree {
    fn end_array(&mut self, len: usize) -> Result<(), Stop> {
        let items = self.stack.split_off(self.stack.len() - len);
        self.stack.push(Value::Array(items));
        Ok(())
    }
    fn end_object(&mut self, pairs: usize) -> Result<(), Stop> {
        let flat = self.stack.split_off(self.stack.len() - 2 * pairs);
        let mut entries = Vec::new();
        let mut it = flat.into_iter();
        while let (Some(Value::Str(k)), Some(v)) = (it.next(), it.next()) {
            entries.push((k, v));
        }
        self.stack.push(Value::Object(entries));
        Ok(())
    }
    fn key(&mut self, key: &[u8]) -> Result<(), Stop> {
        let key = std::str::from_utf8(key).map_err(|_| Stop)?;
        self.stack.push(Value::Str(key.to_owned()));
        Ok(())
    }
    fn string(&mut self, value: &[u8]) -> Result<(), Stop> {
        let value = std::str::from_utf8(value).map_err(|_| Stop)?;
        self.stack.push(Value::Str(value.to_owned()));
        Ok(())
    }
    fn integer(&mut self, value: i64) -> Result<(), Stop> {
        self.stack.push(Value::Int(value));
        Ok(())
    }
    fn big_integer(&mut self, digits: &str) -> Result<(), Stop> {
        self.stack.push(Value::Big(digits.to_owned()));
        Ok(())
    }
    fn float(&mut self, value: f64) -> Result<(), Stop> {
        self.stack.push(Value::Float(value));
        Ok(())
    }
    fn boolean(&mut self, value: bool) -> Result<(), Stop> {
        self.stack.push(Value::Bool(value));
        Ok(())
    }
    fn null(&mut self) -> Result<(), Stop> {
        self.stack.push(Value::Null);
        Ok(())
    }
}

fn parse_with(input: &[u8], options: &Options) -> Result<Value, Error> {
    let mut tree = Tree::default();
    parse(input, options, &mut tree)?;
    assert_eq!(tree.stack.len(), 1, "one value per document");
    Ok(tree.stack.pop().unwrap_or(Value::Null))
}

fn value(input: &str) -> Value {
    parse_with(input.as_bytes(), &Options::default()).unwrap_or_else(|e| panic!("{input:?}: {e}"))
}

fn error(input: &[u8]) -> Error {
    match parse_with(input, &Options::default()) {
        Ok(v) => panic!("{:?} parsed to {v:?}", String::from_utf8_lossy(input)),
        Err(e) => e,
    }
}

fn s(text: &str) -> Value {
    Value::Str(text.to_owned())
}

#[test]
fn scalars_containers_and_whitespace() {
    assert_eq!(value(" null "), Value::Null);
    assert_eq!(value("true"), Value::Bool(true));
    assert_eq!(value("-0"), Value::Int(0));
    assert_eq!(
        value("\t\r\n[1 , -2,3.5,\"x\" ]"),
        Value::Array(vec![
            Value::Int(1),
            Value::Int(-2),
            Value::Float(3.5),
            s("x")
        ])
    );
    assert_eq!(
        value(r#"{"a":{"b":[]},"c":{}}"#),
        Value::Object(vec![
            (
                "a".into(),
                Value::Object(vec![("b".into(), Value::Array(vec![]))])
            ),
            ("c".into(), Value::Object(vec![]))
        ])
    );
}

#[test]
fn numbers_of_every_size() {
    assert_eq!(
        value("999999999999999999"),
        Value::Int(999_999_999_999_999_999)
    );
    assert_eq!(value("9223372036854775807"), Value::Int(i64::MAX));
    assert_eq!(value("-9223372036854775808"), Value::Int(i64::MIN));
    assert_eq!(
        value("9223372036854775808"),
        Value::Big("9223372036854775808".into())
    );
    assert_eq!(
        value("-123123123123123123123123123123"),
        Value::Big("-123123123123123123123123123123".into())
    );
    assert_eq!(value("1E2"), Value::Float(100.0));
    assert_eq!(value("1.5e-3"), Value::Float(0.0015));
    assert_eq!(value("0.1"), Value::Float(0.1));
    assert_eq!(value("1e400"), Value::Float(f64::INFINITY));
    assert_eq!(value("-1e400"), Value::Float(f64::NEG_INFINITY));
    assert_eq!(value("1e-400"), Value::Float(0.0));
    // Correctly rounded at the halfway point between two floats.
    assert_eq!(value("9007199254740993"), Value::Int(9_007_199_254_740_993));
    assert_eq!(
        value("9007199254740993.0"),
        Value::Float(9_007_199_254_740_992.0)
    );
    for bad in [
        "-",
        "01",
        "-01",
        "1.",
        ".1",
        "1e",
        "1e+",
        "+1",
        "0x1",
        "1.e3",
        "Infinity",
        "NaN",
        "-Infinity",
    ] {
        error(bad.as_bytes());
    }
}

#[test]
fn strings_escapes_and_surrogates() {
    assert_eq!(
        value(r#""a\"b\\c\/d\b\f\n\r\t""#),
        s("a\"b\\c/d\u{8}\u{c}\n\r\t")
    );
    assert_eq!(value(r#""\u00e9\u20AC""#), s("é€"));
    assert_eq!(value(r#""\uD834\uDD1E""#), s("𝄞"));
    assert_eq!(value(r#""\uD800""#), s("\u{FFFD}"));
    assert_eq!(value(r#""\uDEAD""#), s("\u{FFFD}"));
    assert_eq!(value(r#""\uD888\u1234""#), s("\u{FFFD}\u{1234}"));
    assert_eq!(value(r#""\uDD1E\uD834""#), s("\u{FFFD}\u{FFFD}"));
    assert_eq!(
        value("\"日本語 long enough to use the word scan\""),
        s("日本語 long enough to use the word scan")
    );
    assert_eq!(value("\"\u{7f}\""), s("\u{7f}"));
    assert_eq!(error(b"\"a\tb\"").kind(), ErrorKind::ControlCharacter);
    assert_eq!(error(b"\"\\x\"").kind(), ErrorKind::InvalidEscape);
    assert_eq!(error(b"\"\\u12G4\"").kind(), ErrorKind::InvalidEscape);
    assert_eq!(error(b"\"abc").kind(), ErrorKind::UnexpectedEnd);
    assert_eq!(error(b"\"ab\xffcd\"").kind(), ErrorKind::InvalidUtf8);
    assert_eq!(error(b"\"ab\xffcd\"").offset(), 3);
    assert_eq!(error(b"\"\\n\xe0\xff\"").kind(), ErrorKind::InvalidUtf8);
}

#[test]
fn errors_point_at_the_byte() {
    let cases: [(&[u8], usize); 8] = [
        (b"[1,]", 3),
        (b"{\"a\" 1}", 5),
        (b"", 0),
        (b"   ", 3),
        (b"[1] x", 4),
        (b"[1 2]", 3),
        (b"{\"a\":1,}", 7),
        (b"tru", 3),
    ];
    for (input, offset) in cases {
        assert_eq!(
            error(input).offset(),
            offset,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(
        error(b"[1] x").to_string(),
        "unexpected data after the value at byte 4"
    );
    assert_eq!(error(b"[1,]").to_string(), "unexpected ']' at byte 3");
}

#[test]
fn nesting_is_bounded_and_never_recursive() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(parse_with(deep(100).as_bytes(), &Options::default()).is_ok());
    let e = error(deep(101).as_bytes());
    assert_eq!(e.kind(), ErrorKind::TooDeep(101));
    assert_eq!(e.offset(), 100);
    // A tape, not a tree: dropping a 100,000-deep test tree would recurse.
    let unbounded = Options {
        max_nesting: 0,
        ..Options::default()
    };
    let doc = deep(100_000);
    assert!(parse(
        doc.as_bytes(),
        &unbounded,
        &mut Tape::for_input(doc.as_bytes())
    )
    .is_ok());
    let open = "[".repeat(100_000);
    let e = parse(open.as_bytes(), &unbounded, &mut Tape::default()).err();
    assert_eq!(e.map(|e| e.kind()), Some(ErrorKind::UnexpectedEnd));
}

#[test]
fn nan_and_infinity_only_when_allowed() {
    let allow = Options {
        allow_nan: true,
        ..Options::default()
    };
    match parse_with(b"[NaN,Infinity,-Infinity]", &allow) {
        Ok(Value::Array(items)) => {
            assert!(matches!(items[0], Value::Float(f) if f.is_nan()));
            assert_eq!(items[1], Value::Float(f64::INFINITY));
            assert_eq!(items[2], Value::Float(f64::NEG_INFINITY));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(error(b"[NaN]").kind(), ErrorKind::UnexpectedByte(b'N'));
    assert!(parse_with(b"[-Inf]", &allow).is_err());
}

#[test]
fn duplicate_keys_all_reach_the_sink() {
    assert_eq!(
        value(r#"{"a":1,"a":2}"#),
        Value::Object(vec![
            ("a".into(), Value::Int(1)),
            ("a".into(), Value::Int(2))
        ])
    );
}

#[test]
fn a_tape_replays_the_same_calls() {
    let doc = r#"{"k\n":[1,2.5,"s",true,false,null,12345678901234567890123,{"":[]}],"z":"\u00e9"}"#;
    let mut tape = Tape::for_input(doc.as_bytes());
    assert!(parse(doc.as_bytes(), &Options::default(), &mut tape).is_ok());
    let mut tree = Tree::default();
    assert!(tape.replay(doc.as_bytes(), &mut tree).is_ok());
    assert_eq!(tree.stack, vec![value(doc)]);
}

#[test]
fn a_sink_can_stop_the_parse() {
    struct Refuse;
    impl Sink for Refuse {
        fn end_array(&mut self, _: usize) -> Result<(), Stop> {
            Ok(())
        }
        fn end_object(&mut self, _: usize) -> Result<(), Stop> {
            Ok(())
        }
        fn key(&mut self, _: &[u8]) -> Result<(), Stop> {
            Ok(())
        }
        fn string(&mut self, _: &[u8]) -> Result<(), Stop> {
            Err(Stop)
        }
        fn integer(&mut self, _: i64) -> Result<(), Stop> {
            Ok(())
        }
        fn big_integer(&mut self, _: &str) -> Result<(), Stop> {
            Ok(())
        }
        fn float(&mut self, _: f64) -> Result<(), Stop> {
            Ok(())
        }
        fn boolean(&mut self, _: bool) -> Result<(), Stop> {
            Ok(())
        }
        fn null(&mut self) -> Result<(), Stop> {
            Ok(())
        }
    }
    let e = parse(b"[1, \"no\"]", &Options::default(), &mut Refuse).err();
    assert_eq!(e, Some(Error::new(ErrorKind::Stopped, 4)));
}

fn suite_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("JSON_TEST_SUITE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/json-test-suite")
        })
        .join("test_parsing");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: JSONTestSuite not found at {} (set JSON_TEST_SUITE_DIR)",
            dir.display()
        );
        None
    }
}

/// Every `y_` case parses, every `n_` case fails, and the `i_` cases do what the module
/// documentation decides.
#[test]
fn json_test_suite() {
    let Some(dir) = suite_dir() else { return };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let (mut yes, mut no, mut implementation) = (0, 0, 0);
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let Ok(input) = std::fs::read(&path) else {
            continue;
        };
        let result = parse_with(&input, &Options::default());
        match name.as_bytes()[0] {
            b'y' => {
                yes += 1;
                assert!(result.is_ok(), "{name} must parse: {:?}", result.err());
            }
            b'n' => {
                no += 1;
                assert!(result.is_err(), "{name} must fail: {:?}", result.ok());
            }
            b'i' => {
                implementation += 1;
                let expect_ok = name.starts_with("i_number_")
                    || name.contains("surrogate")
                        && !name.contains("UTF8_surrogate")
                        && !name.contains("UTF-8_invalid");
                if name == "i_structure_500_nested_arrays.json" {
                    assert!(
                        matches!(result, Err(e) if e.kind() == ErrorKind::TooDeep(101)),
                        "{name}"
                    );
                } else if expect_ok {
                    assert!(result.is_ok(), "{name} must parse: {:?}", result.err());
                } else {
                    assert!(result.is_err(), "{name} must fail: {:?}", result.ok());
                }
            }
            _ => {}
        }
    }
    assert!(
        yes > 90 && no > 180 && implementation > 30,
        "{yes} {no} {implementation}"
    );
}

#[test]
fn strings_are_written_as_the_json_gem_writes_them() {
    let mut out = Vec::new();
    write_str(
        &mut out,
        "a\"b\\c/\u{1}\u{1f}\u{8}\u{c}\n\r\té\u{7f}\u{2028}",
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "\"a\\\"b\\\\c/\\u0001\\u001f\\b\\f\\n\\r\\té\u{7f}\u{2028}\""
    );
}

// The ties are exact binary values (…867.25 is a multiple of 1/8 there), written in full.
#[allow(clippy::excessive_precision)]
#[test]
fn floats_are_written_as_ruby_prints_them() {
    let cases = [
        (1e20, "1.0e+20"),
        (1.5e-5, "1.5e-05"),
        (0.0001, "0.0001"),
        (100.0, "100.0"),
        (-0.0, "-0.0"),
        (0.0, "0.0"),
        (1e16, "1.0e+16"),
        (1e15, "1.0e+15"),
        (1e14, "100000000000000.0"),
        (123456789.123, "123456789.123"),
        (2.5e-4, "0.00025"),
        (1.0 / 3.0, "0.3333333333333333"),
        (5e-324, "5.0e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
        (1234567890123456.0, "1.234567890123456e+15"),
        (123456789012345.0, "123456789012345.0"),
        (-2.5, "-2.5"),
        (1000000000000000.5, "1000000000000000.5"),
        (-1028245919549356.1, "-1028245919549356.1"),
        (9.999999999999998e15, "9.999999999999998e+15"),
        (999999999999999.0, "999999999999999.0"),
        (702219414104867.25, "702219414104867.2"),
        (-172680428933670.625, "-172680428933670.62"),
    ];
    for (value, text) in cases {
        let mut out = Vec::new();
        write_f64(&mut out, value);
        assert_eq!(String::from_utf8_lossy(&out), text, "{value:e}");
        // And it reads back to the same float.
        assert_eq!(text.parse::<f64>().ok(), Some(value));
    }
}
