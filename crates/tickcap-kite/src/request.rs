//! Client → server text messages: `subscribe`, `unsubscribe` and `mode`.
//!
//! The capture engine writes them ([`ClientRequest::write_json`]); the replay
//! feed reads them ([`ClientRequest::parse`]).

use super::tick::{Mode, UnknownMode};

/// One request a Kite client sends as a JSON text frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRequest {
    /// `{"a":"subscribe","v":[tokens]}`: stream these (quote mode at first).
    Subscribe(Vec<u32>),
    /// `{"a":"unsubscribe","v":[tokens]}`.
    Unsubscribe(Vec<u32>),
    /// `{"a":"mode","v":["full",[tokens]]}`.
    Mode(Mode, Vec<u32>),
}

/// A text frame that is not a valid request; the text is kept for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, or not of the request's shape.
    #[error("not a Kite request ({reason}): {text:?}")]
    Malformed {
        /// What was wrong.
        reason: String,
        /// The offending text (truncated to 200 bytes).
        text: String,
    },
    /// A `mode` request with an unknown mode name.
    #[error(transparent)]
    UnknownMode(#[from] UnknownMode),
    /// An action other than subscribe, unsubscribe or mode.
    #[error("unknown action {0:?}")]
    UnknownAction(String),
}

#[derive(serde::Deserialize)]
struct Wire {
    a: String,
    v: serde_json::Value,
}

fn tokens(v: &serde_json::Value) -> Option<Vec<u32>> {
    v.as_array()?
        .iter()
        .map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok()))
        .collect()
}

impl ClientRequest {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<Self, RequestError> {
        let malformed = |reason: &str| RequestError::Malformed {
            reason: reason.to_owned(),
            text: text.chars().take(200).collect(),
        };
        let wire: Wire = serde_json::from_str(text).map_err(|e| malformed(&e.to_string()))?;
        match wire.a.as_str() {
            "subscribe" => Ok(ClientRequest::Subscribe(
                tokens(&wire.v).ok_or_else(|| malformed("v must be a list of tokens"))?,
            )),
            "unsubscribe" => Ok(ClientRequest::Unsubscribe(
                tokens(&wire.v).ok_or_else(|| malformed("v must be a list of tokens"))?,
            )),
            "mode" => {
                let pair = wire
                    .v
                    .as_array()
                    .filter(|a| a.len() == 2)
                    .ok_or_else(|| malformed("v must be [mode, [tokens]]"))?;
                let mode: Mode = pair[0]
                    .as_str()
                    .ok_or_else(|| malformed("mode must be a string"))?
                    .parse()?;
                let list =
                    tokens(&pair[1]).ok_or_else(|| malformed("v[1] must be a list of tokens"))?;
                Ok(ClientRequest::Mode(mode, list))
            }
            other => Err(RequestError::UnknownAction(other.to_owned())),
        }
    }

    /// Appends the JSON text of this request to `out`.
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write;
        let list = |out: &mut String, tokens: &[u32]| {
            out.push('[');
            for (i, t) in tokens.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{t}");
            }
            out.push(']');
        };
        match self {
            ClientRequest::Subscribe(t) => {
                out.push_str(r#"{"a":"subscribe","v":"#);
                list(out, t);
            }
            ClientRequest::Unsubscribe(t) => {
                out.push_str(r#"{"a":"unsubscribe","v":"#);
                list(out, t);
            }
            ClientRequest::Mode(m, t) => {
                let _ = write!(out, r#"{{"a":"mode","v":["{m}","#);
                list(out, t);
                out.push(']');
            }
        }
        out.push('}');
    }

    /// The JSON text of this request.
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }
}

/// The URL a ticker client opens: the feed's base URL with `api_key` and
/// `access_token` added to its query, as the official clients build it
/// (`wss://ws.kite.trade/?api_key=…&access_token=…`). A base without a path
/// gets `/` before the query, also when it already has a query of its own
/// (`ws://host?x=1` → `ws://host/?x=1&api_key=…`).
pub fn ticker_url(base: &str, api_key: &str, access_token: &str) -> String {
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (base, None),
    };
    let after_scheme = head.split_once("://").map_or(head, |(_, r)| r);
    let slash = if after_scheme.contains('/') { "" } else { "/" };
    let query = match query {
        Some(q) if !q.is_empty() => format!("{q}&"),
        _ => String::new(),
    };
    format!("{head}{slash}?{query}api_key={api_key}&access_token={access_token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_as_the_official_client_sends_them() {
        let table = [
            (
                r#"{"a": "subscribe", "v": [408065, 884737]}"#,
                ClientRequest::Subscribe(vec![408_065, 884_737]),
            ),
            (
                r#"{"a": "unsubscribe", "v": [408065]}"#,
                ClientRequest::Unsubscribe(vec![408_065]),
            ),
            (
                r#"{"a": "mode", "v": ["full", [408065]]}"#,
                ClientRequest::Mode(Mode::Full, vec![408_065]),
            ),
        ];
        for (text, req) in table {
            assert_eq!(ClientRequest::parse(text).as_ref(), Ok(&req), "{text}");
            assert_eq!(ClientRequest::parse(&req.to_json()), Ok(req));
        }
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        for text in [
            "",
            "[]",
            r#"{"a":"subscribe","v":[-1]}"#,
            r#"{"a":"subscribe","v":[4294967296]}"#,
            r#"{"a":"mode","v":["fast",[1]]}"#,
            r#"{"a":"mode","v":"full"}"#,
            r#"{"a":"dance","v":[]}"#,
        ] {
            assert!(ClientRequest::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn the_ticker_url_puts_the_path_before_the_query() {
        let u = |b| ticker_url(b, "k", "t");
        assert_eq!(
            u("wss://ws.kite.trade"),
            "wss://ws.kite.trade/?api_key=k&access_token=t"
        );
        assert_eq!(
            u("ws://127.0.0.1:9/"),
            "ws://127.0.0.1:9/?api_key=k&access_token=t"
        );
        assert_eq!(u("ws://h/feed"), "ws://h/feed?api_key=k&access_token=t");
        assert_eq!(u("ws://h?x=1"), "ws://h/?x=1&api_key=k&access_token=t");
        assert_eq!(u("ws://h/p?x=1"), "ws://h/p?x=1&api_key=k&access_token=t");
        assert_eq!(u("ws://h?"), "ws://h/?api_key=k&access_token=t");
    }
}
