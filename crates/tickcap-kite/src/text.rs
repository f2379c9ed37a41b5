//! Server → client JSON text frames: order postbacks, errors and messages.
//!
//! Parsed with simd-json (in place, so the caller hands over a mutable copy).
//! Anything not understood is kept whole in [`TextFrame::Unknown`] so that it
//! can be logged or stored, never dropped.

use simd_json::prelude::*;
use simd_json::OwnedValue;

/// What an order postback says, as far as tickcap reads it; the full JSON is
/// kept in `raw`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderUpdate {
    /// Kite's order id.
    pub order_id: Option<String>,
    /// Order status (`COMPLETE`, `OPEN`, `REJECTED`, ...).
    pub status: Option<String>,
    /// Trading symbol.
    pub tradingsymbol: Option<String>,
    /// Instrument token.
    pub instrument_token: Option<u32>,
    /// The whole `data` object, as JSON.
    pub raw: String,
}

/// One text frame from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum TextFrame {
    /// `{"type":"order","data":{...}}`.
    Order(OrderUpdate),
    /// `{"type":"error","data":"..."}`: the server reports a problem.
    Error(String),
    /// `{"type":"message","data":"..."}`: informational.
    Message(String),
    /// Anything else (another `type`, no `type`, not JSON): the text as sent.
    Unknown {
        /// The `type` field, when there was one.
        kind: Option<String>,
        /// The original text.
        raw: String,
    },
}

fn data_text(v: Option<&OwnedValue>) -> String {
    match v {
        Some(OwnedValue::String(s)) => s.clone(),
        Some(other) => other.encode(),
        None => String::new(),
    }
}

/// Parses one text frame. `scratch` is reused between calls to hold the
/// mutable copy simd-json parses in place.
pub fn parse_text(text: &str, scratch: &mut Vec<u8>) -> TextFrame {
    scratch.clear();
    scratch.extend_from_slice(text.as_bytes());
    let unknown = |kind: Option<String>| TextFrame::Unknown {
        kind,
        raw: text.to_owned(),
    };
    let Ok(value) = simd_json::to_owned_value(scratch) else {
        return unknown(None);
    };
    let Some(obj) = value.as_object() else {
        return unknown(None);
    };
    let kind = obj.get("type").and_then(|t| t.as_str());
    let data = obj.get("data");
    match kind {
        Some("error") => TextFrame::Error(data_text(data)),
        Some("message") => TextFrame::Message(data_text(data)),
        Some("order") => match data.and_then(|d| d.as_object()) {
            Some(d) => {
                let s = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                TextFrame::Order(OrderUpdate {
                    order_id: s("order_id"),
                    status: s("status"),
                    tradingsymbol: s("tradingsymbol"),
                    instrument_token: d
                        .get("instrument_token")
                        .and_then(|v| v.as_u64())
                        .and_then(|v| u32::try_from(v).ok()),
                    raw: data.map(|d| d.encode()).unwrap_or_default(),
                })
            }
            None => unknown(Some("order".to_owned())),
        },
        other => unknown(other.map(str::to_owned)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_as_kite_sends_them() {
        let mut s = Vec::new();
        assert_eq!(
            parse_text(r#"{"type":"error","data":"Invalid access token"}"#, &mut s),
            TextFrame::Error("Invalid access token".into())
        );
        assert_eq!(
            parse_text(r#"{"type":"message","data":"hello"}"#, &mut s),
            TextFrame::Message("hello".into())
        );
        let order = r#"{"type":"order","data":{"order_id":"220303000308932","status":"COMPLETE","tradingsymbol":"SBIN","instrument_token":779521,"quantity":1}}"#;
        let TextFrame::Order(o) = parse_text(order, &mut s) else {
            panic!("not an order")
        };
        assert_eq!(o.order_id.as_deref(), Some("220303000308932"));
        assert_eq!(o.status.as_deref(), Some("COMPLETE"));
        assert_eq!(o.instrument_token, Some(779_521));
        assert!(o.raw.contains("\"quantity\":1"));
    }

    #[test]
    fn unknown_frames_are_kept_raw() {
        let mut s = Vec::new();
        for (text, kind) in [
            (
                r#"{"type":"instrument_update","data":{}}"#,
                Some("instrument_update"),
            ),
            ("not json", None),
            ("[1,2]", None),
            (r#"{"type":"order","data":"x"}"#, Some("order")),
        ] {
            assert_eq!(
                parse_text(text, &mut s),
                TextFrame::Unknown {
                    kind: kind.map(Into::into),
                    raw: text.into()
                },
                "{text}"
            );
        }
    }
}
