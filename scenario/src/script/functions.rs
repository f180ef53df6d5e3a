//! The functions scripts and `${...}` expressions may call besides Rhai's own: digests and
//! MACs, encodings, identifiers, random values, time and JSON. Each is a small wrapper over a
//! well-kept crate (hmac, sha2, base64, uuid, rand, serde_json); none reads a file, the network
//! or the process's environment.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::Rng;
use rhai::{Blob, Dynamic, Engine, EvalAltResult, ImmutableString};
use sha2::{Digest, Sha256};

use super::MAX_STRING_BYTES;

type Outcome<T> = Result<T, Box<EvalAltResult>>;

/// The functions' names with their arguments, for the documentation and for hints.
pub const FUNCTIONS: &[&str] = &[
    "hmac_sha256(key, data)",
    "sha256(data)",
    "hex(data)",
    "hex_decode(text)",
    "base64(data)",
    "base64url(data)",
    "base64_decode(text)",
    "base64url_decode(text)",
    "uuid()",
    "random_int(low, high)",
    "random_float()",
    "random_string(length)",
    "time_ms()",
    "time_s()",
    "time_iso()",
    "json(value)",
    "json_parse(text)",
    "json_get(text, pointer)",
];

/// Registers every function on `engine`. `data` arguments take a string (its UTF-8 bytes) or
/// a blob.
pub(super) fn register(engine: &mut Engine) {
    engine
        .register_fn("hmac_sha256", |key: ImmutableString, data: ImmutableString| {
            hmac_sha256(key.as_bytes(), data.as_bytes())
        })
        .register_fn("hmac_sha256", |key: Blob, data: ImmutableString| {
            hmac_sha256(&key, data.as_bytes())
        })
        .register_fn("hmac_sha256", |key: ImmutableString, data: Blob| {
            hmac_sha256(key.as_bytes(), &data)
        })
        .register_fn("hmac_sha256", |key: Blob, data: Blob| hmac_sha256(&key, &data))
        .register_fn("sha256", |data: ImmutableString| sha256(data.as_bytes()))
        .register_fn("sha256", |data: Blob| sha256(&data))
        .register_fn("hex", |data: ImmutableString| hex(data.as_bytes()))
        .register_fn("hex", |data: Blob| hex(&data))
        .register_fn("hex_decode", |text: ImmutableString| hex_decode(&text))
        .register_fn("base64", |data: ImmutableString| STANDARD.encode(data.as_bytes()))
        .register_fn("base64", |data: Blob| STANDARD.encode(&data))
        .register_fn("base64url", |data: ImmutableString| URL_SAFE.encode(data.as_bytes()))
        .register_fn("base64url", |data: Blob| URL_SAFE.encode(&data))
        .register_fn("base64_decode", |text: ImmutableString| {
            decode_base64(&STANDARD, &text, "base64_decode")
        })
        .register_fn("base64url_decode", |text: ImmutableString| {
            decode_base64(&URL_SAFE, &text, "base64url_decode")
        })
        .register_fn("uuid", || uuid::Uuid::new_v4().to_string())
        .register_fn("random_int", random_int)
        .register_fn("random_float", || rand::rng().random::<f64>())
        .register_fn("random_string", random_string)
        .register_fn("time_ms", || unix_time().as_millis() as i64)
        .register_fn("time_s", || unix_time().as_secs() as i64)
        .register_fn("time_iso", || {
            humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
        })
        .register_fn("json", json)
        .register_fn("json_parse", |text: ImmutableString| json_parse(&text))
        .register_fn("json_get", |text: ImmutableString, pointer: ImmutableString| {
            json_get(&text, &pointer)
        });
}

const STANDARD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// URL-safe alphabet without padding, as JWTs and most URL tokens use.
const URL_SAFE: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn hmac_sha256(key: &[u8], data: &[u8]) -> Blob {
    // HMAC takes keys of any length (longer ones are hashed first): `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn sha256(data: &[u8]) -> Blob {
    Sha256::digest(data).to_vec()
}

fn hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(data.len() * 2);
    for byte in data {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    text
}

fn hex_decode(text: &str) -> Outcome<Blob> {
    let digits = text.as_bytes();
    if digits.len() % 2 != 0 {
        return Err(format!("hex_decode: `{text}` has an odd number of digits").into());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let high = (pair[0] as char).to_digit(16);
            let low = (pair[1] as char).to_digit(16);
            match (high, low) {
                (Some(high), Some(low)) => Ok((high * 16 + low) as u8),
                _ => Err(format!("hex_decode: `{text}` is not hexadecimal").into()),
            }
        })
        .collect()
}

fn decode_base64(engine: &base64::engine::GeneralPurpose, text: &str, function: &str) -> Outcome<Blob> {
    engine
        .decode(text.trim_end_matches('='))
        .or_else(|_| engine.decode(text))
        .map_err(|error| format!("{function}: {error}").into())
}

fn random_int(low: i64, high: i64) -> Outcome<i64> {
    if low > high {
        return Err(format!("random_int({low}, {high}): the low bound is above the high one").into());
    }
    Ok(rand::rng().random_range(low..=high))
}

fn random_string(length: i64) -> Outcome<String> {
    let Ok(length) = usize::try_from(length) else {
        return Err(format!("random_string({length}): the length cannot be negative").into());
    };
    if length > MAX_STRING_BYTES {
        return Err(format!("random_string({length}): at most {MAX_STRING_BYTES} characters").into());
    }
    let mut rng = rand::rng();
    Ok((0..length)
        .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
        .collect())
}

fn unix_time() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// JSON text of a value: maps, arrays, strings, numbers, booleans and `()` (null).
fn json(value: Dynamic) -> Outcome<String> {
    serde_json::to_string(&value).map_err(|error| format!("json: {error}").into())
}

fn json_parse(text: &str) -> Outcome<Dynamic> {
    serde_json::from_str::<Dynamic>(text).map_err(|error| format!("json_parse: {error}").into())
}

/// The value at a JSON pointer (`/a/0/b`), or `()` when there is none.
fn json_get(text: &str, pointer: &str) -> Outcome<Dynamic> {
    let document: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("json_get: not JSON: {error}"))?;
    match document.pointer(pointer) {
        Some(value) => rhai::serde::to_dynamic(value),
        None => Ok(Dynamic::UNIT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2.
    #[test]
    fn hmac_matches_the_rfc_vectors() {
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn encodings_round_trip_and_refuse_garbage() {
        assert_eq!(hex_decode("00ff10").unwrap(), vec![0, 255, 16]);
        assert!(hex_decode("0").is_err());
        assert!(hex_decode("zz").is_err());
        assert_eq!(STANDARD.encode(b"hi?"), "aGk/");
        assert_eq!(URL_SAFE.encode(b"hi?"), "aGk_");
        assert_eq!(decode_base64(&STANDARD, "aGk/", "base64_decode").unwrap(), b"hi?");
        assert_eq!(decode_base64(&URL_SAFE, "aGk_", "base64url_decode").unwrap(), b"hi?");
        assert!(decode_base64(&STANDARD, "***", "base64_decode").is_err());
    }

    #[test]
    fn json_reads_and_writes() {
        let value = json_get(r#"{"a":[1,{"b":"x"}]}"#, "/a/1/b").unwrap();
        assert_eq!(value.into_string().unwrap(), "x");
        assert!(json_get(r#"{"a":1}"#, "/missing").unwrap().is_unit());
        assert!(json_get("not json", "/a").is_err());
        let mut map = rhai::Map::new();
        map.insert("n".into(), Dynamic::from(2_i64));
        assert_eq!(json(Dynamic::from_map(map)).unwrap(), r#"{"n":2}"#);
        assert!(random_int(3, 1).is_err());
        assert_eq!(random_int(4, 4).unwrap(), 4);
        assert!(random_string(-1).is_err());
    }
}
