//! The path and payload rules, as a table of accepted and refused cases.
#![allow(clippy::unwrap_used)]

use crate::common::file;
use secrets_store_writer::{PathError, validate_path, validate_payload};

/// The error variant's name, so the table states which rule a path breaks.
fn rule(error: &PathError) -> &'static str {
    match error {
        PathError::Empty => "empty",
        PathError::Nul { .. } => "nul",
        PathError::TooLong { .. } => "too-long",
        PathError::Absolute { .. } => "absolute",
        PathError::NotClean { .. } => "not-clean",
        PathError::ParentElement { .. } => "parent",
        PathError::Reserved { .. } => "reserved",
        PathError::ElementTooLong { .. } => "element-too-long",
        PathError::Duplicate { .. } => "duplicate",
        PathError::FileDirClash { .. } => "clash",
        PathError::InvalidMode { .. } => "mode",
    }
}

#[test]
fn accepted_paths() {
    let max_element = "e".repeat(255);
    // 17 elements (16 slashes): 15 × 255 + 200 + 55 + 16 = 4096 bytes, every element legal.
    let exactly_4096 = {
        let mut parts = vec![max_element.clone(); 15];
        parts.push("f".repeat(200));
        parts.push("g".repeat(55));
        parts.join("/")
    };
    assert_eq!(exactly_4096.len(), 4096);
    let cases: Vec<String> = vec![
        "a".into(),
        "a/b".into(),
        "a/b/c/d".into(),
        "tls.crt".into(),
        ".hidden".into(),
        "a/..b".into(),
        "a/...".into(),
        "a/.b".into(),
        "with space".into(),
        "ключ/значение".into(),
        "line\nbreak".into(),
        "back\\slash".into(),
        max_element.clone(),
        format!("dir/{max_element}"),
        exactly_4096,
    ];
    for path in &cases {
        assert_eq!(validate_path(path), Ok(()), "{path:?}");
    }
}

#[test]
fn refused_paths() {
    let long_4097 = format!("{}/{}", "a".repeat(2048), "b".repeat(2048));
    assert_eq!(long_4097.len(), 4097);
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "empty"),
        ("/abs".into(), "absolute"),
        ("/".into(), "absolute"),
        ("/a/b".into(), "absolute"),
        ("a//b".into(), "not-clean"),
        ("a/".into(), "not-clean"),
        ("a/b/".into(), "not-clean"),
        ("./a".into(), "not-clean"),
        ("a/./b".into(), "not-clean"),
        ("a/.".into(), "not-clean"),
        (".".into(), "not-clean"),
        ("..".into(), "parent"),
        ("../a".into(), "parent"),
        ("a/..".into(), "parent"),
        ("a/../b".into(), "parent"),
        ("a/b/../../..".into(), "parent"),
        ("..data".into(), "reserved"),
        ("..data/x".into(), "reserved"),
        ("..data_tmp".into(), "reserved"),
        ("..foo/x".into(), "reserved"),
        ("...".into(), "reserved"),
        ("..2020_01_01_00_00_00.abc".into(), "reserved"),
        ("a\0b".into(), "nul"),
        ("\0".into(), "nul"),
        (long_4097, "too-long"),
        ("x".repeat(256), "element-too-long"),
        (format!("a/{}/b", "x".repeat(256)), "element-too-long"),
    ];
    for (path, expected) in &cases {
        let error = validate_path(path).expect_err(path);
        assert_eq!(rule(&error), *expected, "{path:?}: {error}");
        if !path.is_empty() {
            assert_eq!(error.path(), Some(path.as_str()));
        }
    }
}

#[test]
fn error_messages_name_the_path_and_the_rule_escaped() {
    let error = validate_path("..data/\u{1b}[31mred").unwrap_err();
    let message = error.to_string();
    assert!(message.contains(r#""..data/\u{1b}[31mred""#), "{message}");
    assert!(message.contains("reserved"), "{message}");
    assert!(!message.contains('\u{1b}'));

    let error = validate_path("a\0b").unwrap_err();
    assert!(error.to_string().contains(r#""a\0b""#), "{error}");

    // A huge path is cut in messages.
    let error = validate_path(&"z".repeat(5000)).unwrap_err();
    assert!(error.to_string().len() < 400, "{error}");
}

#[test]
fn accepted_payloads() {
    let cases: Vec<Vec<secrets_store_contract::File>> = vec![
        vec![],
        vec![file("a", 0o644, b"x")],
        vec![file("a", 0o000, b""), file("b", 0o777, b"y")],
        // Shared directory, and a name that is a string prefix but not a directory prefix.
        vec![
            file("a/b", 0o400, b""),
            file("a/c", 0o600, b""),
            file("ab", 0o644, b""),
        ],
        vec![file("alias/0", 0o644, b"0"), file("alias/1", 0o644, b"1")],
        vec![file("a/b/c", 0o644, b""), file("a/bc", 0o644, b"")],
    ];
    for payload in &cases {
        assert_eq!(validate_payload(payload), Ok(()), "{payload:?}");
    }
}

#[test]
fn refused_payloads() {
    let cases: Vec<(Vec<secrets_store_contract::File>, &str)> = vec![
        (
            vec![file("a", 0o644, b""), file("..data", 0o644, b"")],
            "reserved",
        ),
        (
            vec![file("a", 0o644, b""), file("a", 0o600, b"other")],
            "duplicate",
        ),
        (
            vec![file("x/y", 0o644, b""), file("x/y", 0o644, b"")],
            "duplicate",
        ),
        (
            vec![file("a", 0o644, b""), file("a/b", 0o644, b"")],
            "clash",
        ),
        (
            vec![file("a/b", 0o644, b""), file("a", 0o644, b"")],
            "clash",
        ),
        (
            vec![file("a/b", 0o644, b""), file("a/b/c/d", 0o644, b"")],
            "clash",
        ),
        (vec![file("a", 0o1000, b"")], "mode"),
        (vec![file("a", 0o4755, b"")], "mode"),
        (
            vec![file("ok", 0o644, b""), file("a", u32::MAX, b"")],
            "mode",
        ),
        (
            vec![file("ok", 0o644, b""), file("/etc/passwd", 0o644, b"")],
            "absolute",
        ),
    ];
    for (payload, expected) in &cases {
        let error = validate_payload(payload).expect_err(&format!("{payload:?}"));
        assert_eq!(rule(&error), *expected, "{payload:?}: {error}");
    }
    let clash = validate_payload(&[file("a", 0o644, b""), file("a/b", 0o644, b"")]).unwrap_err();
    assert_eq!(
        clash.to_string(),
        r#"file path "a" is a file but also the directory of "a/b""#
    );
    let mode = validate_payload(&[file("k", 0o1777, b"")]).unwrap_err();
    assert_eq!(
        mode.to_string(),
        r#"file "k" has mode 0o1777; at most 0o777 is allowed"#
    );
}
