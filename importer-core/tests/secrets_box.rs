//! SecretBox encryption, the Secret wrapper, key validation and redaction.
#![allow(clippy::unwrap_used)]

use importer_core::secrets::{
    redact_destination_key, redact_mailchimp_key, validate_mailchimp_key, KeyError, SealedBy,
    Secret, SecretBox, SecretError, SecretField, SecretSlot,
};

const KEY: &str = "0123456789abcdef0123456789abcdef-us6";

fn new_box() -> SecretBox {
    SecretBox::from_hex(&SecretBox::generate_key_hex()).unwrap()
}

const SLOT: SecretSlot = SecretSlot {
    account_id: 7,
    field: SecretField::MailchimpKey,
};

#[test]
fn a_secret_round_trips_through_encryption() {
    let sbox = new_box();
    for plaintext in [KEY, "", "destination-key-ünïcode", &"x".repeat(10_000)] {
        let stored = sbox.encrypt(SLOT, plaintext);
        assert_eq!(stored.len(), 1 + 8 + 12 + plaintext.len() + 16);
        assert_eq!(sbox.decrypt(SLOT, &stored).unwrap().expose(), plaintext);
        assert_eq!(sbox.key_of(&stored), SealedBy::Current);
    }
}

#[test]
fn ciphertext_does_not_contain_the_plaintext() {
    let sbox = new_box();
    let stored = sbox.encrypt(SLOT, KEY);
    assert!(!stored
        .windows(8)
        .any(|w| KEY.as_bytes().windows(8).any(|k| k == w)));
}

#[test]
fn nonces_differ_between_encryptions_of_the_same_secret() {
    let sbox = new_box();
    let a = sbox.encrypt(SLOT, KEY);
    let b = sbox.encrypt(SLOT, KEY);
    assert_eq!(a[..9], b[..9], "same header: version and key id");
    assert_ne!(a[9..21], b[9..21]);
    assert_ne!(a, b);
}

#[test]
fn a_value_sealed_by_a_key_this_box_lacks_is_a_key_fault_naming_both_key_ids() {
    let one = new_box();
    let other = new_box();
    let err = other.decrypt(SLOT, &one.encrypt(SLOT, KEY)).unwrap_err();
    assert!(matches!(err, SecretError::UnknownKey { .. }), "{err:?}");
    assert!(err.is_key_fault());
    let text = err.to_string();
    assert!(text.contains(&one.current_key_id()), "{text}");
    assert!(text.contains(&other.current_key_id()), "{text}");
    assert_eq!(
        other.key_of(&one.encrypt(SLOT, KEY)),
        SealedBy::Unknown(one.current_key_id())
    );
}

#[test]
fn a_ciphertext_moved_to_another_account_or_column_does_not_open() {
    let sbox = new_box();
    let stored = sbox.encrypt(SLOT, KEY);
    for elsewhere in [
        SecretSlot::new(8, SecretField::MailchimpKey),
        SecretSlot::new(7, SecretField::DestinationKey),
    ] {
        let err = sbox.decrypt(elsewhere, &stored).unwrap_err();
        assert!(matches!(err, SecretError::Misplaced { .. }), "{err:?}");
        assert!(!err.is_key_fault(), "the row is at fault, not the process");
    }
    assert!(sbox.decrypt(SLOT, &stored).is_ok());
}

#[test]
fn tampered_or_short_ciphertext_fails_to_decrypt() {
    let sbox = new_box();
    let mut stored = sbox.encrypt(SLOT, KEY);
    let last = stored.len() - 1;
    stored[last] ^= 1;
    assert!(matches!(
        sbox.decrypt(SLOT, &stored),
        Err(SecretError::Misplaced { .. })
    ));
    assert!(matches!(
        sbox.decrypt(SLOT, &[0u8; 27]),
        Err(SecretError::TooShort { len: 27, .. })
    ));
    assert!(sbox.decrypt(SLOT, &[]).is_err());
}

#[test]
fn during_a_rotation_both_keys_open_and_only_the_new_one_seals() {
    let old_hex = SecretBox::generate_key_hex();
    let new_hex = SecretBox::generate_key_hex();
    let old = SecretBox::from_hex(&old_hex).unwrap();
    let both = SecretBox::from_hex(&new_hex)
        .unwrap()
        .with_previous(&old_hex)
        .unwrap();
    let under_old = old.encrypt(SLOT, KEY);
    assert_eq!(both.key_of(&under_old), SealedBy::Previous);
    assert_eq!(both.decrypt(SLOT, &under_old).unwrap().expose(), KEY);
    assert_eq!(both.previous_key_id(), Some(old.current_key_id()));

    let resealed = both.reseal(SLOT, &under_old).unwrap().unwrap();
    assert_eq!(both.key_of(&resealed), SealedBy::Current);
    assert_eq!(both.decrypt(SLOT, &resealed).unwrap().expose(), KEY);
    assert!(
        both.reseal(SLOT, &resealed).unwrap().is_none(),
        "idempotent"
    );
    // The old key alone no longer opens it: once rotated, the old key can go.
    assert!(old.decrypt(SLOT, &resealed).unwrap_err().is_key_fault());
    // A misplaced value is never counted as rotated.
    let elsewhere = SecretSlot::new(9, SecretField::MailchimpKey);
    assert!(both.reseal(elsewhere, &resealed).is_err());
    assert!(both.reseal(elsewhere, &under_old).is_err());

    let same = SecretBox::from_hex(&new_hex)
        .unwrap()
        .with_previous(&new_hex)
        .unwrap();
    assert_eq!(
        same.previous_key_id(),
        None,
        "a previous equal to the current is ignored"
    );
}

/// The format before key ids: `nonce || ciphertext`, no associated data.
fn legacy_seal(hex_key: &str, plaintext: &str) -> Vec<u8> {
    use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
    use chacha20poly1305::{ChaCha20Poly1305, Key};
    let key = hex::decode(hex_key).unwrap();
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    [
        nonce.as_slice(),
        &cipher.encrypt(&nonce, plaintext.as_bytes()).unwrap(),
    ]
    .concat()
}

#[test]
fn values_of_the_old_format_still_open_and_rotate_into_the_new_one() {
    let hex_key = SecretBox::generate_key_hex();
    let sbox = SecretBox::from_hex(&hex_key).unwrap();
    // Enough values that some nonces start with the version byte (about 1 in 256).
    for _ in 0..2000 {
        let legacy = legacy_seal(&hex_key, KEY);
        assert_eq!(sbox.decrypt(SLOT, &legacy).unwrap().expose(), KEY);
        let resealed = sbox.reseal(SLOT, &legacy).unwrap().unwrap();
        assert_eq!(sbox.key_of(&resealed), SealedBy::Current);
    }
    let other = new_box();
    let err = other
        .decrypt(SLOT, &legacy_seal(&hex_key, KEY))
        .unwrap_err();
    assert!(err.is_key_fault(), "{err:?}");
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
    let hex_key = SecretBox::generate_key_hex();
    let sbox = SecretBox::from_hex(&hex_key).unwrap();
    let shown = format!("{sbox:?}");
    assert_eq!(shown, format!("SecretBox(key {})", sbox.current_key_id()));
    assert!(!shown.contains(&hex_key[..16]) && !hex_key.contains(&sbox.current_key_id()));
}

#[test]
fn mailchimp_keys_must_be_32_hex_and_a_data_centre() {
    assert_eq!(validate_mailchimp_key(KEY).unwrap().dc, "us6");
    let us21 = "ffffffffffffffffffffffffffffffff-us21";
    assert_eq!(validate_mailchimp_key(us21).unwrap().dc, "us21");
    let upper = "0123456789ABCDEF0123456789abcdef-us6";
    assert_eq!(
        validate_mailchimp_key(upper).unwrap().dc,
        "us6",
        "hex in either case"
    );
    let bad = [
        "",
        "us6",
        "0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef-",
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
        assert!(text.contains("<32 hex characters>-<data centre"), "{text}");
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
