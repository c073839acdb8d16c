//! SecretBox encryption, the Secret wrapper, key validation and redaction.
#![allow(clippy::unwrap_used)]

use importer_core::secrets::{
    redact_destination_key, redact_mailchimp_key, validate_mailchimp_key, KeyError, Secret,
    SecretBox, SecretError,
};

const KEY: &str = "0123456789abcdef0123456789abcdef-us6";

#[test]
fn a_secret_round_trips_through_encryption() {
    let sbox = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
    for plaintext in [KEY, "", "destination-key-ünïcode", &"x".repeat(10_000)] {
        let stored = sbox.encrypt(plaintext);
        assert_eq!(stored.len(), 12 + plaintext.len() + 16);
        assert_eq!(sbox.decrypt(&stored).unwrap().expose(), plaintext);
    }
}

#[test]
fn ciphertext_does_not_contain_the_plaintext() {
    let sbox = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
    let stored = sbox.encrypt(KEY);
    assert!(!stored
        .windows(8)
        .any(|w| KEY.as_bytes().windows(8).any(|k| k == w)));
}

#[test]
fn nonces_differ_between_encryptions_of_the_same_secret() {
    let sbox = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
    let a = sbox.encrypt(KEY);
    let b = sbox.encrypt(KEY);
    assert_ne!(a[..12], b[..12]);
    assert_ne!(a, b);
}

#[test]
fn decrypting_with_another_key_fails() {
    let one = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
    let other = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
    let err = other.decrypt(&one.encrypt(KEY)).unwrap_err();
    assert!(matches!(err, SecretError::Decrypt));
}

#[test]
fn tampered_or_short_ciphertext_fails_to_decrypt() {
    let sbox = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
    let mut stored = sbox.encrypt(KEY);
    let last = stored.len() - 1;
    stored[last] ^= 1;
    assert!(matches!(sbox.decrypt(&stored), Err(SecretError::Decrypt)));
    assert!(matches!(
        sbox.decrypt(&[0u8; 27]),
        Err(SecretError::TooShort { len: 27, .. })
    ));
    assert!(sbox.decrypt(&[]).is_err());
}

#[test]
fn encryption_keys_must_be_64_hex_characters() {
    let good = SecretBox::generate_key_hex();
    assert_eq!(good.len(), 64);
    assert!(good.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(good, SecretBox::generate_key_hex());
    for bad in [
        "",
        "abc",
        &good[..62],
        &format!("{good}00"),
        &good.replace(&good[..1], "z"),
    ] {
        let err = SecretBox::from_hex(bad).unwrap_err();
        assert!(matches!(err, SecretError::BadKey { .. }), "{bad}");
        assert!(bad.is_empty() || !err.to_string().contains(bad));
    }
}

#[test]
fn a_missing_environment_variable_is_named_in_the_error() {
    let err = SecretBox::from_env_var("IMPORTER_TEST_SURELY_UNSET_SECRET_KEY").unwrap_err();
    assert!(err
        .to_string()
        .contains("IMPORTER_TEST_SURELY_UNSET_SECRET_KEY"));
}

#[test]
fn a_malformed_environment_key_is_reported_by_variable_name() {
    std::env::set_var("IMPORTER_TEST_BAD_SECRET_KEY", "not-hex-at-all");
    let err = SecretBox::from_env_var("IMPORTER_TEST_BAD_SECRET_KEY").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("IMPORTER_TEST_BAD_SECRET_KEY"), "{text}");
    assert!(!text.contains("not-hex-at-all"), "{text}");
}

#[test]
fn secret_debug_and_display_are_redacted() {
    let secret = Secret::new(KEY);
    assert_eq!(format!("{secret:?}"), "[redacted]");
    assert_eq!(format!("{secret}"), "[redacted]");
    assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
    assert_eq!(secret.expose(), KEY);
    let sbox = SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap();
    assert_eq!(format!("{sbox:?}"), "SecretBox([redacted])");
}

#[test]
fn mailchimp_keys_must_be_32_lowercase_hex_and_a_data_centre() {
    assert_eq!(validate_mailchimp_key(KEY).unwrap().dc, "us6");
    let us21 = "ffffffffffffffffffffffffffffffff-us21";
    assert_eq!(validate_mailchimp_key(us21).unwrap().dc, "us21");
    let bad = [
        "",
        "us6",
        "0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef-",
        "0123456789ABCDEF0123456789abcdef-us6",
        "0123456789abcdef0123456789abcde-us6",
        "0123456789abcdef0123456789abcdef0-us6",
        "0123456789abcdef0123456789abcdeg-us6",
        "0123456789abcdef0123456789abcdef-us",
        "0123456789abcdef0123456789abcdef-6",
        "0123456789abcdef0123456789abcdef-us6/",
        "0123456789abcdef0123456789abcdef-us6 ",
        " 0123456789abcdef0123456789abcdef-us6",
        "0123456789abcdef0123456789abcdef-us6-us6",
        "0123456789abcdef0123456789abcdef-us6.evil.com",
    ];
    for key in bad {
        let err = validate_mailchimp_key(key).unwrap_err();
        assert_eq!(err, KeyError::Shape);
        let text = err.to_string();
        assert!(
            text.contains("<32 lowercase hex characters>-<data centre"),
            "{text}"
        );
        assert!(key.len() < 8 || !text.contains(key), "{text}");
    }
}

#[test]
fn redaction_keeps_only_what_is_not_secret() {
    assert_eq!(redact_mailchimp_key(KEY), "…-us6");
    assert_eq!(redact_mailchimp_key("garbage"), "…");
    assert_eq!(redact_mailchimp_key("abc-../../x"), "…");
    assert_eq!(redact_destination_key("0123456789abcdefWXYZ"), "…WXYZ");
    assert_eq!(redact_destination_key("0123456789abcdef"), "…cdef");
    assert_eq!(redact_destination_key("0123456789abcde"), "…");
    assert_eq!(redact_destination_key(""), "…");
    assert_eq!(redact_destination_key("ünïcödé-ünïcödé-ü"), "…dé-ü");
}
