//! `connect: { compression: ... }` and `expect: { extensions: ... }`: permessage-deflate's
//! offers and the agreement a step expects, with located problems.

use crate::compression::MIN_CLIENT_WINDOW_BITS;
use crate::compression::{parse_answer, Agreed, ClientWindowBits, Compression, Deflate, DeflateOffer};
use crate::error::Problems;
use crate::raw::{RawCompression, RawDeflate, RawDeflateOffer, RawWindowBits};

/// The compression a connect step asks for; `Off` when it says nothing.
pub(super) fn compression(raw: Option<&RawCompression>, field: &str, problems: &mut Problems<'_>) -> Compression {
    let field = format!("{field}.compression");
    match raw {
        None => Compression::Off,
        Some(RawCompression::Named(name)) => match name.as_str() {
            "off" => Compression::Off,
            "deflate" => Compression::deflate(),
            "browser" => Compression::browser(),
            _ => {
                problems.add(
                    &field,
                    format!("`{name}` is not a compression setting"),
                    Some("write `off`, `deflate`, `browser`, or a map of permessage-deflate parameters".into()),
                );
                Compression::Off
            }
        },
        Some(RawCompression::Deflate(deflate)) => Compression::Deflate(deflate_offers(deflate, &field, problems)),
    }
}

fn deflate_offers(raw: &RawDeflate, field: &str, problems: &mut Problems<'_>) -> Deflate {
    let inline = RawDeflateOffer {
        client_no_context_takeover: raw.client_no_context_takeover,
        server_no_context_takeover: raw.server_no_context_takeover,
        server_max_window_bits: raw.server_max_window_bits,
        client_max_window_bits: match &raw.client_max_window_bits {
            None => None,
            Some(RawWindowBits::Offered(offered)) => Some(RawWindowBits::Offered(*offered)),
            Some(RawWindowBits::Bits(bits)) => Some(RawWindowBits::Bits(*bits)),
        },
    };
    let has_inline = inline.client_no_context_takeover
        || inline.server_no_context_takeover
        || inline.server_max_window_bits.is_some()
        || inline.client_max_window_bits.is_some();
    let offers = match &raw.offers {
        Some(offers) => {
            if has_inline {
                problems.add(
                    field,
                    "one offer's parameters and `offers` exclude each other",
                    Some("move the parameters into an entry of `offers`".into()),
                );
            }
            if offers.is_empty() {
                problems.add(
                    &format!("{field}.offers"),
                    "no offer",
                    Some("give at least one offer, or write `compression: off`".into()),
                );
            }
            offers
                .iter()
                .enumerate()
                .map(|(index, offer)| deflate_offer(offer, &format!("{field}.offers[{index}]"), problems))
                .collect()
        }
        None => vec![deflate_offer(&inline, field, problems)],
    };
    let threshold = raw.threshold.unwrap_or(0);
    if threshold > crate::MAX_FILE_BYTES as u64 {
        problems.add(
            &format!("{field}.threshold"),
            format!("{threshold} bytes is larger than any message wsfleet sends"),
            None,
        );
    }
    Deflate {
        offers,
        threshold: usize::try_from(threshold).unwrap_or(usize::MAX),
    }
}

fn deflate_offer(raw: &RawDeflateOffer, field: &str, problems: &mut Problems<'_>) -> DeflateOffer {
    if let Some(bits) = raw.server_max_window_bits {
        if !(8..=15).contains(&bits) {
            problems.add(
                &format!("{field}.server_max_window_bits"),
                format!("{bits} is not a window size from 8 to 15 (RFC 7692)"),
                None,
            );
        }
    }
    let client_max_window_bits = match raw.client_max_window_bits {
        None | Some(RawWindowBits::Offered(false)) => None,
        Some(RawWindowBits::Offered(true)) => Some(ClientWindowBits::Any),
        Some(RawWindowBits::Bits(bits)) => {
            if !(MIN_CLIENT_WINDOW_BITS..=15).contains(&bits) {
                problems.add(
                    &format!("{field}.client_max_window_bits"),
                    format!("{bits} is not a window size from {MIN_CLIENT_WINDOW_BITS} to 15"),
                    Some(
                        "zlib cannot compress with an 8-bit window; write 9 to 15, or `true` to let the server choose"
                            .into(),
                    ),
                );
            }
            Some(ClientWindowBits::AtMost(bits))
        }
    };
    DeflateOffer {
        client_no_context_takeover: raw.client_no_context_takeover,
        server_no_context_takeover: raw.server_no_context_takeover,
        server_max_window_bits: raw.server_max_window_bits,
        client_max_window_bits,
    }
}

/// `expect: { extensions: ... }`: the agreement the server must answer with (`None` inside: it
/// must decline). Checked against the step's offers so that an expectation no answer can meet
/// is found before the run.
pub(super) fn expected_extensions(
    raw: Option<&str>,
    compression: &Compression,
    field: &str,
    problems: &mut Problems<'_>,
) -> Option<Option<Agreed>> {
    let raw = raw?;
    let field = format!("{field}.expect.extensions");
    let expected = match parse_answer(raw) {
        Ok(expected) => expected,
        Err(why) => {
            problems.add(
                &field,
                why,
                Some("write the answer as a server sends it, e.g. `permessage-deflate; server_max_window_bits=12`, or \"\" for none".into()),
            );
            return None;
        }
    };
    if let Some(agreed) = &expected {
        match compression {
            Compression::Off => problems.add(
                &field,
                "this step offers no compression, so no server can agree to it",
                Some("add `compression: deflate` (or `browser`) to the step".into()),
            ),
            Compression::Deflate(deflate) => {
                if !deflate.offers.iter().any(|offer| agreed.answers(offer)) {
                    problems.add(
                        &field,
                        format!(
                            "`{}` is not an answer any of this step's offers allows",
                            agreed.canonical()
                        ),
                        Some("compare it with the offers in `compression`".into()),
                    );
                }
            }
        }
    }
    Some(expected)
}
