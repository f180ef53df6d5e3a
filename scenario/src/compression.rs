//! permessage-deflate (RFC 7692) as a connect step asks for it: the offers it makes in
//! `Sec-WebSocket-Extensions`, and the server's answer, parsed and checked against them.
//!
//! Pure code shared by validation (`expect: { extensions: ... }` is parsed with the same parser
//! as a server's answer) and the agent (which renders the offers once per connect step and
//! checks every answer).

use std::fmt;

/// The extension's token.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The smallest LZ77 window zlib compresses with: asked for 8 bits, zlib uses 9 (a 256-byte
/// window is not available for raw deflate), so a client cannot promise 8.
pub const MIN_CLIENT_WINDOW_BITS: u8 = 9;

/// What a connect step does about compression.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Compression {
    /// No offer: the connection speaks plain WebSocket (the default).
    #[default]
    Off,
    Deflate(Deflate),
}

impl Compression {
    /// The `browser` preset: what Chromium offers (`permessage-deflate; client_max_window_bits`),
    /// every data message compressed.
    pub fn browser() -> Compression {
        Compression::Deflate(Deflate {
            offers: vec![DeflateOffer {
                client_max_window_bits: Some(ClientWindowBits::Any),
                ..DeflateOffer::default()
            }],
            threshold: 0,
        })
    }

    /// `deflate` with no parameters: one bare offer, every data message compressed.
    pub fn deflate() -> Compression {
        Compression::Deflate(Deflate {
            offers: vec![DeflateOffer::default()],
            threshold: 0,
        })
    }

    /// The `Sec-WebSocket-Extensions` value the upgrade request carries, when compression is on.
    pub fn header_value(&self) -> Option<String> {
        match self {
            Compression::Off => None,
            Compression::Deflate(deflate) => Some(
                deflate
                    .offers
                    .iter()
                    .map(DeflateOffer::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        }
    }
}

/// permessage-deflate: the offers, strictest first, and the size below which messages are sent
/// uncompressed.
#[derive(Clone, Debug, PartialEq)]
pub struct Deflate {
    pub offers: Vec<DeflateOffer>,
    /// Data messages (whole, in one frame) with fewer payload bytes than this go uncompressed.
    pub threshold: usize,
}

/// One offer's parameters (RFC 7692 section 7.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeflateOffer {
    pub client_no_context_takeover: bool,
    pub server_no_context_takeover: bool,
    /// The largest window the server may compress with (8-15).
    pub server_max_window_bits: Option<u8>,
    /// Whether (and up to what) the server may limit the window the client compresses with.
    pub client_max_window_bits: Option<ClientWindowBits>,
}

/// `client_max_window_bits` in an offer: without a value (the server picks), or at most this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientWindowBits {
    Any,
    AtMost(u8),
}

impl fmt::Display for DeflateOffer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(PERMESSAGE_DEFLATE)?;
        if self.client_no_context_takeover {
            formatter.write_str("; client_no_context_takeover")?;
        }
        if self.server_no_context_takeover {
            formatter.write_str("; server_no_context_takeover")?;
        }
        if let Some(bits) = self.server_max_window_bits {
            write!(formatter, "; server_max_window_bits={bits}")?;
        }
        match self.client_max_window_bits {
            None => {}
            Some(ClientWindowBits::Any) => formatter.write_str("; client_max_window_bits")?,
            Some(ClientWindowBits::AtMost(bits)) => write!(formatter, "; client_max_window_bits={bits}")?,
        }
        Ok(())
    }
}

/// The parameters a server agreed to (its `Sec-WebSocket-Extensions` answer), as they apply to
/// the connection. Absent window bits mean 15.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Agreed {
    pub client_no_context_takeover: bool,
    pub server_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    pub client_max_window_bits: Option<u8>,
}

impl Agreed {
    /// The window the client compresses with.
    pub fn client_window_bits(&self) -> u8 {
        self.client_max_window_bits.unwrap_or(15)
    }

    /// The window the server compresses with (the client inflates with as much).
    pub fn server_window_bits(&self) -> u8 {
        self.server_max_window_bits.unwrap_or(15)
    }

    /// Whether `offer` allows this answer (RFC 7692 sections 7.1.1-7.1.2): the server may add
    /// `server_no_context_takeover` and `client_no_context_takeover` and may lower
    /// `server_max_window_bits`; it may name `client_max_window_bits` only when offered, at
    /// most the offered value; it must keep what the offer asked of it.
    pub fn answers(&self, offer: &DeflateOffer) -> bool {
        if offer.server_no_context_takeover && !self.server_no_context_takeover {
            return false;
        }
        match (offer.server_max_window_bits, self.server_max_window_bits) {
            (Some(_), None) => return false,
            (Some(offered), Some(agreed)) if agreed > offered => return false,
            _ => {}
        }
        match (offer.client_max_window_bits, self.client_max_window_bits) {
            (None, Some(_)) => false,
            (Some(ClientWindowBits::AtMost(offered)), Some(agreed)) => agreed <= offered,
            _ => true,
        }
    }

    /// The answer as a header value, parameters in a fixed order (what reports show).
    pub fn canonical(&self) -> String {
        let mut text = String::from(PERMESSAGE_DEFLATE);
        if self.client_no_context_takeover {
            text.push_str("; client_no_context_takeover");
        }
        if self.server_no_context_takeover {
            text.push_str("; server_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            text.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if let Some(bits) = self.client_max_window_bits {
            text.push_str(&format!("; client_max_window_bits={bits}"));
        }
        text
    }
}

impl fmt::Display for Agreed {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.canonical())
    }
}

/// Parses a `Sec-WebSocket-Extensions` answer (or an expected one): `Ok(None)` when it is empty
/// (no extension agreed). A server answers with one extension; anything it does not know how to
/// apply (another extension, a repeated or unknown parameter, a bad value) is an error.
pub fn parse_answer(value: &str) -> Result<Option<Agreed>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.contains(',') {
        return Err(format!(
            "`{value}` names more than one extension; a server agrees to one"
        ));
    }
    let mut parts = value.split(';').map(str::trim);
    let name = parts.next().unwrap_or_default();
    if !name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
        return Err(format!(
            "`{name}` is not an extension wsfleet offers (only {PERMESSAGE_DEFLATE})"
        ));
    }
    let mut agreed = Agreed::default();
    let mut seen: Vec<String> = Vec::new();
    for part in parts {
        let (key, raw_value) = match part.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.trim().trim_matches('"'))),
            None => (part, None),
        };
        let key = key.to_ascii_lowercase();
        if seen.contains(&key) {
            return Err(format!("`{key}` appears twice"));
        }
        let bits = |raw: Option<&str>, lowest: u8| -> Result<u8, String> {
            let raw = raw.ok_or_else(|| format!("`{key}` needs a value in an answer"))?;
            match raw.parse::<u8>() {
                Ok(bits) if (lowest..=15).contains(&bits) && !raw.starts_with('0') => Ok(bits),
                _ => Err(format!("`{key}={raw}` is not a window size from {lowest} to 15")),
            }
        };
        match key.as_str() {
            "client_no_context_takeover" | "server_no_context_takeover" if raw_value.is_some() => {
                return Err(format!("`{key}` takes no value"));
            }
            "client_no_context_takeover" => agreed.client_no_context_takeover = true,
            "server_no_context_takeover" => agreed.server_no_context_takeover = true,
            "server_max_window_bits" => agreed.server_max_window_bits = Some(bits(raw_value, 8)?),
            "client_max_window_bits" => agreed.client_max_window_bits = Some(bits(raw_value, 8)?),
            _ => return Err(format!("`{key}` is not a permessage-deflate parameter")),
        }
        seen.push(key);
    }
    Ok(Some(agreed))
}

/// Checks a server's answer against the step's offers: the agreement when deflate was agreed,
/// `None` when the server declined, or why the answer cannot be used.
pub fn check_answer(value: Option<&str>, deflate: &Deflate) -> Result<Option<Agreed>, String> {
    let Some(agreed) = parse_answer(value.unwrap_or_default())? else {
        return Ok(None);
    };
    if !deflate.offers.iter().any(|offer| agreed.answers(offer)) {
        let offered: Vec<String> = deflate.offers.iter().map(DeflateOffer::to_string).collect();
        return Err(format!(
            "the server answered `{}`, which none of the offers allows ({})",
            agreed.canonical(),
            offered.join(", ")
        ));
    }
    if agreed.client_window_bits() < MIN_CLIENT_WINDOW_BITS {
        return Err(format!(
            "the server asked for client_max_window_bits={}; zlib compresses with at least {MIN_CLIENT_WINDOW_BITS}",
            agreed.client_window_bits()
        ));
    }
    Ok(Some(agreed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(offers: Vec<DeflateOffer>) -> Deflate {
        Deflate { offers, threshold: 0 }
    }

    #[test]
    fn offers_render_strictest_first() {
        let strict = DeflateOffer {
            client_no_context_takeover: true,
            server_no_context_takeover: true,
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(ClientWindowBits::AtMost(10)),
        };
        let compression = Compression::Deflate(offers(vec![strict, DeflateOffer::default()]));
        assert_eq!(
            compression.header_value().as_deref(),
            Some(
                "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
                 server_max_window_bits=10; client_max_window_bits=10, permessage-deflate"
            )
        );
        assert_eq!(
            Compression::browser().header_value().as_deref(),
            Some("permessage-deflate; client_max_window_bits")
        );
        assert_eq!(Compression::Off.header_value(), None);
    }

    #[test]
    fn answers_parse_in_any_order_and_case() {
        let agreed = parse_answer("Permessage-Deflate; client_max_window_bits=12;server_max_window_bits=\"12\"")
            .unwrap()
            .unwrap();
        assert_eq!(
            agreed,
            Agreed {
                server_max_window_bits: Some(12),
                client_max_window_bits: Some(12),
                ..Agreed::default()
            }
        );
        assert_eq!(
            agreed.canonical(),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        );
        assert_eq!(parse_answer("").unwrap(), None);
        assert_eq!(parse_answer("  ").unwrap(), None);
    }

    #[test]
    fn bad_answers_say_why() {
        for (answer, why) in [
            ("x-webkit-deflate-frame", "not an extension"),
            ("permessage-deflate, permessage-deflate", "more than one"),
            ("permessage-deflate; server_max_window_bits=16", "not a window size"),
            ("permessage-deflate; server_max_window_bits=7", "not a window size"),
            ("permessage-deflate; server_max_window_bits=012", "not a window size"),
            ("permessage-deflate; client_max_window_bits", "needs a value"),
            ("permessage-deflate; server_no_context_takeover=1", "takes no value"),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                "twice",
            ),
            ("permessage-deflate; level=9", "not a permessage-deflate parameter"),
        ] {
            let error = parse_answer(answer).unwrap_err();
            assert!(error.contains(why), "{answer}: {error}");
        }
    }

    #[test]
    fn answers_are_checked_against_the_offers() {
        let browser = match Compression::browser() {
            Compression::Deflate(deflate) => deflate,
            Compression::Off => unreachable!(),
        };
        // What Python's websockets answers to the browser offer.
        let agreed = check_answer(
            Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
            &browser,
        )
        .unwrap()
        .unwrap();
        assert_eq!((agreed.server_window_bits(), agreed.client_window_bits()), (12, 12));
        assert_eq!(check_answer(None, &browser).unwrap(), None);

        let bare = offers(vec![DeflateOffer::default()]);
        // client_max_window_bits was not offered: the server may not name it.
        assert!(
            check_answer(Some("permessage-deflate; client_max_window_bits=10"), &bare)
                .unwrap_err()
                .contains("none of the offers")
        );
        // The server may add no-context-takeover on its own.
        assert!(check_answer(
            Some("permessage-deflate; client_no_context_takeover; server_no_context_takeover"),
            &bare
        )
        .is_ok());

        let strict = offers(vec![DeflateOffer {
            server_no_context_takeover: true,
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(ClientWindowBits::AtMost(10)),
            ..DeflateOffer::default()
        }]);
        // Dropping a requirement, or raising a window past the offer, is refused.
        for answer in [
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11",
        ] {
            assert!(check_answer(Some(answer), &strict).is_err(), "{answer}");
        }
        // Two offers: the answer may fit the second.
        let two = offers(vec![strict.offers[0].clone(), DeflateOffer::default()]);
        assert!(check_answer(Some("permessage-deflate"), &two).is_ok());

        // A window of 8 for the client's own compressor cannot be honoured.
        let any = offers(vec![DeflateOffer {
            client_max_window_bits: Some(ClientWindowBits::Any),
            ..DeflateOffer::default()
        }]);
        assert!(check_answer(Some("permessage-deflate; client_max_window_bits=8"), &any)
            .unwrap_err()
            .contains("zlib"));
    }
}
