//! How Kafka message values become records and back: JSON, CSV (one record per message, no
//! header: columns in field order), UTF-8 text, raw bytes.

use crate::sources::CsvLineParser;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The encoding of message values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaFormat {
    /// One JSON value per message.
    Json,
    /// One CSV record per message, without a header: the columns are the record's fields in
    /// declaration order.
    Csv,
    /// The value as UTF-8 text (`String` records).
    Text,
    /// The value's bytes as they are (`Vec<u8>` records).
    Bytes,
}

impl KafkaFormat {
    /// A short name for `explain` and logs.
    pub fn label(self) -> &'static str {
        match self {
            KafkaFormat::Json => "json",
            KafkaFormat::Csv => "csv",
            KafkaFormat::Text => "text",
            KafkaFormat::Bytes => "bytes",
        }
    }
}

/// Decodes one message value; the error says why it cannot be decoded.
pub(crate) type DecodeFn<T> = fn(&[u8], &mut CsvLineParser) -> Result<T, String>;

/// Appends the encoding of one record to the buffer.
pub(crate) type EncodeFn<T> = fn(&T, &mut Vec<u8>) -> Result<(), String>;

pub(crate) fn decode_json<T: DeserializeOwned>(
    value: &[u8],
    _: &mut CsvLineParser,
) -> Result<T, String> {
    serde_json::from_slice(value).map_err(|e| format!("invalid JSON: {e}"))
}

pub(crate) fn decode_csv<T: DeserializeOwned>(
    value: &[u8],
    csv: &mut CsvLineParser,
) -> Result<T, String> {
    let line = value
        .strip_suffix(b"\n")
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .unwrap_or(value);
    let record = csv.parse(line);
    record.deserialize(None).map_err(|e| match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => match err.field() {
            Some(field) => format!("invalid CSV record: field {}: {}", field + 1, err.kind()),
            None => format!("invalid CSV record: {}", err.kind()),
        },
        _ => format!("invalid CSV record: {e}"),
    })
}

pub(crate) fn decode_text(value: &[u8], _: &mut CsvLineParser) -> Result<String, String> {
    std::str::from_utf8(value)
        .map(str::to_owned)
        .map_err(|e| format!("invalid UTF-8: {e}"))
}

pub(crate) fn decode_bytes(value: &[u8], _: &mut CsvLineParser) -> Result<Vec<u8>, String> {
    Ok(value.to_vec())
}

pub(crate) fn encode_json<T: Serialize>(record: &T, out: &mut Vec<u8>) -> Result<(), String> {
    serde_json::to_writer(out, record).map_err(|e| format!("cannot encode as JSON: {e}"))
}

pub(crate) fn encode_csv<T: Serialize>(record: &T, out: &mut Vec<u8>) -> Result<(), String> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(&mut *out);
    w.serialize(record)
        .and_then(|_| w.flush().map_err(csv::Error::from))
        .map_err(|e| format!("cannot encode as CSV: {e}"))?;
    drop(w);
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    Ok(())
}

pub(crate) fn encode_text(record: &String, out: &mut Vec<u8>) -> Result<(), String> {
    out.extend_from_slice(record.as_bytes());
    Ok(())
}

// The signature is `EncodeFn<Vec<u8>>`'s.
#[allow(clippy::ptr_arg)]
pub(crate) fn encode_bytes(record: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), String> {
    out.extend_from_slice(record);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Trade {
        symbol: String,
        price: f64,
        qty: u32,
    }

    fn roundtrip<T>(enc: EncodeFn<T>, dec: DecodeFn<T>, record: &T) -> T {
        let mut buf = Vec::new();
        enc(record, &mut buf).unwrap();
        dec(&buf, &mut CsvLineParser::new()).unwrap()
    }

    #[test]
    fn every_format_round_trips() {
        let t = Trade {
            symbol: "A,\"quoted\"".into(),
            price: 1.25,
            qty: 7,
        };
        assert_eq!(roundtrip(encode_json, decode_json, &t), t);
        assert_eq!(roundtrip(encode_csv, decode_csv, &t), t);
        let s = "héllo\nworld".to_string();
        assert_eq!(roundtrip(encode_text, decode_text, &s), s);
        let b = vec![0u8, 255, 10, 13];
        assert_eq!(roundtrip(encode_bytes, decode_bytes, &b), b);
    }

    #[test]
    fn csv_is_headerless_in_field_order() {
        let mut buf = Vec::new();
        encode_csv(
            &Trade {
                symbol: "X".into(),
                price: 2.5,
                qty: 3,
            },
            &mut buf,
        )
        .unwrap();
        assert_eq!(buf, b"X,2.5,3");
        let t: Trade = decode_csv(b"Y,1,2\r\n", &mut CsvLineParser::new()).unwrap();
        assert_eq!(t.symbol, "Y");
    }

    #[test]
    fn decode_errors_say_what_is_wrong() {
        let mut csv = CsvLineParser::new();
        let e = decode_json::<Trade>(b"{\"symbol\":1}", &mut csv).unwrap_err();
        assert!(
            e.starts_with("invalid JSON: invalid type: integer `1`"),
            "{e}"
        );
        let e = decode_csv::<Trade>(b"A,cheap,3", &mut csv).unwrap_err();
        assert!(e.starts_with("invalid CSV record: field 2: "), "{e}");
        let e = decode_text(b"\xff", &mut csv).unwrap_err();
        assert!(e.starts_with("invalid UTF-8"), "{e}");
    }
}
