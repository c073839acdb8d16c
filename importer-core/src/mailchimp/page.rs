//! Decoding a members page member by member: one member that is not valid UTF-8, names a field
//! twice or has a field of the wrong type becomes a [`Rejection`] in its place, never a failure
//! of its page (CONTRACTS.md "Mapping").
//!
//! The common case, a valid page, is decoded in one pass straight into [`Member`]s. Only when
//! that fails is the body split by its JSON structure (strings, escapes and nesting: enough to
//! find where each member starts and ends, no values are interpreted) and each member decoded on
//! its own. A body whose structure is broken (truncated, not JSON) is still an error of the page:
//! it is transient and the page is read again.

use serde::Deserialize;

use super::types::Member;
use super::MailchimpError;
use crate::rejection::{excerpt, RejectReason, Rejection};

/// One position of a page: a member, or what could not be decoded of one.
pub type PageMember = Result<Member, Box<Rejection>>;

/// A page of members and the size of the whole filtered set.
#[derive(Debug, Clone, PartialEq)]
pub struct MembersPage {
    /// The page's positions in the requested order.
    pub members: Vec<PageMember>,
    /// Size of the whole filtered set, computed with the page.
    pub total_items: u64,
    /// Size of the response body.
    pub body_bytes: usize,
}

impl MembersPage {
    /// The members that decoded, dropping the rejected ones (tests and diagnostics).
    pub fn decoded(self) -> Vec<Member> {
        self.members.into_iter().filter_map(Result::ok).collect()
    }
}

#[derive(Deserialize)]
struct WholePage {
    members: Vec<MemberObject>,
    total_items: u64,
}

/// A [`Member`] that must be a JSON object: serde's derive would also take an array and fill the
/// fields by position, which would turn a malformed member into a wrong record.
struct MemberObject(Member);

impl<'de> Deserialize<'de> for MemberObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = MemberObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<MemberObject, A::Error> {
                Member::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(MemberObject)
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// Decodes a members page body; see the module docs. Errors: [`MailchimpError::Malformed`]
/// when the body is not a page at all.
pub fn decode_members_page(body: &[u8]) -> Result<MembersPage, MailchimpError> {
    if let Ok(page) = serde_json::from_slice::<WholePage>(body) {
        return Ok(MembersPage {
            members: page.members.into_iter().map(|m| Ok(m.0)).collect(),
            total_items: page.total_items,
            body_bytes: body.len(),
        });
    }
    let malformed = |reason: String| MailchimpError::Malformed { reason };
    let (members, total) = split_page(body).map_err(malformed)?;
    let total = total.ok_or_else(|| malformed("the page has no total_items".to_owned()))?;
    let total_items = std::str::from_utf8(total)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .ok_or_else(|| malformed("total_items is not a non-negative integer".to_owned()))?;
    let members = members
        .ok_or_else(|| malformed("the page has no members array".to_owned()))?
        .into_iter()
        .map(decode_member)
        .collect();
    Ok(MembersPage {
        members,
        total_items,
        body_bytes: body.len(),
    })
}

/// Decodes one member's bytes, or says why it cannot be.
fn decode_member(raw: &[u8]) -> PageMember {
    let reason = match std::str::from_utf8(raw) {
        Err(_) => RejectReason::InvalidUtf8,
        Ok(text) => match serde_json::from_str::<MemberObject>(text) {
            Ok(member) => return Ok(member.0),
            Err(e) => RejectReason::from_decode(&e),
        },
    };
    let (member_id, email) = sniff_identity(raw);
    Err(Box::new(Rejection {
        member_id,
        email,
        reason,
        member: None,
        excerpt: excerpt(raw),
    }))
}

/// The `id` and `email_address` of an undecodable member, when they are plain strings.
fn sniff_identity(raw: &[u8]) -> (Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(raw);
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&text)
    else {
        return (None, None);
    };
    let field = |k: &str| map.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    (field("id"), field("email_address"))
}

/// The byte spans of the members and of `total_items` of a top-level page object.
type Split<'a> = (Option<Vec<&'a [u8]>>, Option<&'a [u8]>);

fn split_page(body: &[u8]) -> Result<Split<'_>, String> {
    let mut s = Scanner { b: body, i: 0 };
    s.ws();
    s.expect(b'{')?;
    let (mut members, mut total) = (None, None);
    s.ws();
    if s.peek() == Some(b'}') {
        return Ok((members, total));
    }
    loop {
        s.ws();
        let key = s.string()?;
        s.ws();
        s.expect(b':')?;
        s.ws();
        match key {
            b"\"members\"" => members = Some(s.array_elements()?),
            b"\"total_items\"" => total = Some(s.value()?),
            _ => {
                s.value()?;
            }
        }
        s.ws();
        match s.next() {
            Some(b',') => continue,
            Some(b'}') => return Ok((members, total)),
            _ => return Err(format!("expected , or }} at byte {}", s.i)),
        }
    }
}

/// A cursor over JSON bytes that knows where values end, nothing more.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.next() {
            Some(got) if got == c => Ok(()),
            _ => Err(format!("expected {:?} at byte {}", c as char, self.i)),
        }
    }

    /// A string, quotes included.
    fn string(&mut self) -> Result<&'a [u8], String> {
        let start = self.i;
        self.expect(b'"')?;
        loop {
            match self.next() {
                Some(b'"') => return Ok(&self.b[start..self.i]),
                Some(b'\\') => {
                    self.next();
                }
                Some(_) => {}
                None => return Err("the body ends inside a string".to_owned()),
            }
        }
    }

    /// Any value: a string, an object or array (nesting and strings tracked), or a scalar.
    fn value(&mut self) -> Result<&'a [u8], String> {
        let start = self.i;
        match self.peek() {
            Some(b'"') => {
                self.string()?;
            }
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        Some(b'"') => {
                            self.string()?;
                            continue;
                        }
                        Some(b'{' | b'[') => depth += 1,
                        Some(b'}' | b']') => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                break;
                            }
                        }
                        Some(_) => {}
                        None => return Err("the body ends inside a value".to_owned()),
                    }
                    self.i += 1;
                }
            }
            Some(_) => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
                ) {
                    self.i += 1;
                }
                if self.i == start {
                    return Err(format!("expected a value at byte {start}"));
                }
            }
            None => return Err("the body ends before a value".to_owned()),
        }
        Ok(&self.b[start..self.i])
    }

    /// The elements of an array, each as its bytes.
    fn array_elements(&mut self) -> Result<Vec<&'a [u8]>, String> {
        self.expect(b'[')?;
        let mut out = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(out);
        }
        loop {
            self.ws();
            out.push(self.value()?);
            self.ws();
            match self.next() {
                Some(b',') => continue,
                Some(b']') => return Ok(out),
                _ => return Err(format!("expected , or ] at byte {}", self.i)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn page(members: &str) -> Vec<u8> {
        format!(r#"{{"members":[{members}],"total_items":3,"list_id":"x"}}"#).into_bytes()
    }

    const GOOD: &str = r#"{"id":"a","email_address":"a@x.io","status":"subscribed","merge_fields":{"FNAME":"A","LNAME":""}}"#;

    #[test]
    fn a_valid_page_decodes_in_one_pass() {
        let p = decode_members_page(&page(&format!("{GOOD},{GOOD}"))).unwrap();
        assert_eq!(p.total_items, 3);
        assert_eq!(p.members.len(), 2);
        assert!(p.members.iter().all(Result::is_ok));
    }

    #[test]
    fn each_bad_member_is_rejected_in_its_place_with_its_code() {
        let cases: [(&[u8], &str); 4] = [
            (
                br#"{"id":123,"email_address":"b@x.io","status":"subscribed"}"#,
                "invalid_field_type",
            ),
            (
                br#"{"id":"c","id":"d","email_address":"c@x.io","status":"subscribed"}"#,
                "duplicate_field",
            ),
            (
                b"{\"id\":\"e\",\"email_address\":\"\xff\xfe@x.io\",\"status\":\"subscribed\"}",
                "invalid_utf8",
            ),
            (br#"["not","an","object"]"#, "invalid_field_type"),
        ];
        for (bad, code) in cases {
            let mut body = Vec::new();
            body.extend_from_slice(br#"{"members":["#);
            body.extend_from_slice(GOOD.as_bytes());
            body.push(b',');
            body.extend_from_slice(bad);
            body.push(b',');
            body.extend_from_slice(GOOD.as_bytes());
            body.extend_from_slice(br#"],"total_items":3}"#);
            let p = decode_members_page(&body).unwrap();
            assert_eq!(p.members.len(), 3, "{code}");
            assert!(p.members[0].is_ok() && p.members[2].is_ok(), "{code}");
            let rejected = p.members[1].as_ref().unwrap_err();
            assert_eq!(rejected.reason.code(), code);
            assert!(!rejected.excerpt.is_empty());
        }
    }

    #[test]
    fn a_rejected_member_keeps_what_can_be_read_of_its_identity() {
        let p = decode_members_page(&page(
            r#"{"id":"z9","email_address":"z@x.io","status":"subscribed","merge_fields":{"FNAME":7}}"#,
        ))
        .unwrap();
        let rejected = p.members[0].as_ref().unwrap_err();
        assert_eq!(rejected.member_id.as_deref(), Some("z9"));
        assert_eq!(rejected.email.as_deref(), Some("z@x.io"));
    }

    #[test]
    fn a_broken_body_is_an_error_of_the_page() {
        for bad in [
            &b"{"[..],
            b"[]",
            b"{\"members\":[]}",
            b"{\"members\":[{\"id\":\"a\"}],\"total_items\":",
            b"<html>",
            b"{\"members\":[{\"id\":\"a\\\"}],\"total_items\":1}",
        ] {
            assert!(
                matches!(
                    decode_members_page(bad),
                    Err(MailchimpError::Malformed { .. })
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn strings_with_brackets_and_escapes_do_not_confuse_the_split() {
        let tricky = r#"{"id":"q","email_address":"q@x.io","status":"subscribed","merge_fields":{"FNAME":"a]}\"{[","LNAME":7}}"#;
        let p = decode_members_page(&page(&format!("{tricky},{GOOD}"))).unwrap();
        assert_eq!(p.members.len(), 2);
        assert_eq!(
            p.members[0].as_ref().unwrap_err().reason.code(),
            "invalid_field_type"
        );
        assert!(p.members[1].is_ok());
    }
}
