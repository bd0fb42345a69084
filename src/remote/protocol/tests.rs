//! The protocol against hostile bytes: the Rust encoder, the shell's
//! `record` and `find -printf` all read back exactly.

use proptest::prelude::*;

use super::*;

/// Runs `body` (with the library) under the local bash; its stdout.
fn shell(body: &str, call: &[&str]) -> Vec<u8> {
    let script = crate::remote::Script::new().build(body, call);
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const HOSTILE: &[&str] = &[
    "",
    "plain",
    "a\nb",
    "tab\there",
    "@done\\0",
    "\x1b[2J\x1b]0;pwned\x07",
    "%s%d\\0\\n",
    "\n@forged\t-\t\n",
    " leading and trailing ",
    "ünïcödé",
];

#[test]
fn every_hostile_field_comes_back_as_it_was_sent() {
    let fields: Vec<&[u8]> = HOSTILE.iter().map(|f| f.as_bytes()).collect();
    let bytes = [encode("x-1", &fields), encode("end", &[])].concat();
    let records = parse(&bytes).expect("parses");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].fields, fields);
    assert_eq!(records[1], Record::new("end", &[]));
}

#[test]
fn the_shell_writes_what_the_rust_encoder_writes() {
    let fields: Vec<String> = HOSTILE.iter().map(|f| (*f).to_owned()).collect();
    let call: Vec<&str> = ["record", "x"]
        .into_iter()
        .chain(fields.iter().map(String::as_str))
        .collect();
    let out = shell("", &call);
    let texts: Vec<&str> = fields.iter().map(String::as_str).collect();
    assert_eq!(out, encode_text("x", &texts));
}

#[test]
fn find_printf_records_survive_newlines_in_file_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["plain", "new\nline", "@path\t-\t", "\x1b[31mred"] {
        std::fs::write(dir.path().join(name), "x").expect("write");
    }
    let body = r#"list() { find "$1" -mindepth 1 -printf '@path\0002\0%f\0%s\0\n' >&5; }"#;
    let out = shell(body, &["list", &dir.path().display().to_string()]);
    let mut names: Vec<String> = parse(&out)
        .expect("parses")
        .iter()
        .map(|r| {
            assert_eq!((r.kind.as_str(), r.text(1).as_ref()), ("path", "1"));
            r.text(0).into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["\x1b[31mred", "@path\t-\t", "new\nline", "plain"]);
}

#[test]
fn a_stream_fed_in_pieces_gives_the_same_records() {
    let bytes = [
        encode_text("lock", &["a\nb", ""]),
        encode_text("held", &[]),
        encode_text("done", &["x"]),
    ]
    .concat();
    let whole = parse(&bytes).expect("parses");
    for split in 0..bytes.len() {
        let mut parser = Parser::default();
        parser.push(&bytes[..split]);
        let mut records = parser.records().expect("first part");
        parser.push(&bytes[split..]);
        records.extend(parser.records().expect("second part"));
        assert_eq!(records, whole, "split at {split}");
        assert!(!parser.pending());
    }
}

#[test]
fn what_is_not_records_is_an_error_never_a_guess() {
    let garbage = parse(b"hello\n").unwrap_err();
    assert!(
        matches!(garbage, ProtocolError::NotARecord { at: 0, .. }),
        "{garbage}"
    );
    let after = [encode_text("a", &[]), b"x".to_vec()].concat();
    assert!(matches!(
        parse(&after),
        Err(ProtocolError::NotARecord { at: 6, .. })
    ));
    assert_eq!(
        parse(b"@Bad\x000\x00\n"),
        Err(ProtocolError::BadKind { at: 0 })
    );
    assert_eq!(
        parse(b"@a\x00x\x00\n"),
        Err(ProtocolError::BadCount { at: 0 })
    );
    assert_eq!(
        parse(b"@a\x009999999\x00"),
        Err(ProtocolError::BadCount { at: 0 })
    );
    let whole = encode_text("a", &["one", "two"]);
    for cut in 1..whole.len() - 1 {
        assert_eq!(
            parse(&whole[..cut]),
            Err(ProtocolError::Truncated),
            "cut at {cut}"
        );
    }
    assert_eq!(parse(b""), Ok(Vec::new()));
}

proptest! {
    #[test]
    fn any_fields_without_nul_round_trip_through_bash(
        fields in prop::collection::vec("[^\0]{0,40}", 0..6)
    ) {
        let call: Vec<&str> = ["record", "p"].into_iter().chain(fields.iter().map(String::as_str)).collect();
        let out = shell("", &call);
        let records = parse(&out).expect("parses");
        let texts: Vec<&str> = fields.iter().map(String::as_str).collect();
        prop_assert_eq!(records, vec![Record::new("p", &texts)]);
    }
}
