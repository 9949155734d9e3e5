//! Tencent Cloud API 3.0 request signing, TC3-HMAC-SHA256, written from Tencent's published
//! algorithm (no SDK crate for Rust is kept up): a canonical request of the method, path,
//! query, signed headers and the payload's SHA-256; a string to sign with the timestamp and
//! the credential scope (`{date}/{service}/tc3_request`); a signing key derived from the
//! secret key, the date and the service; the `Authorization` header built from them.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::settings::Secret;

pub const ALGORITHM: &str = "TC3-HMAC-SHA256";

/// What one signature covers: a POST to `/` with no query.
pub struct Signing<'a> {
    pub secret_id: &'a str,
    pub secret_key: &'a Secret,
    /// The product, `scf`.
    pub service: &'a str,
    /// Seconds since the Unix epoch, as sent in `X-TC-Timestamp`.
    pub timestamp: u64,
    /// The headers signed, names as sent; `content-type` and `host` at least.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

impl Signing<'_> {
    /// The UTC date of the timestamp, `YYYY-MM-DD`.
    pub fn date(&self) -> String {
        let days = (self.timestamp / 86_400) as i64;
        let (y, m, d) = civil_from_days(days);
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// Lower-cased names, sorted, joined by `;`, with the canonical header lines.
    fn canonical_headers(&self) -> (String, String) {
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_ascii_lowercase()))
            .collect();
        headers.sort();
        let names = headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>();
        let lines = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        (names.join(";"), lines)
    }

    pub fn canonical_request(&self) -> String {
        let (signed, lines) = self.canonical_headers();
        let payload = hex::encode(Sha256::digest(self.payload));
        format!("POST\n/\n\n{lines}\n{signed}\n{payload}")
    }

    pub fn string_to_sign(&self) -> String {
        let hashed = hex::encode(Sha256::digest(self.canonical_request()));
        format!(
            "{ALGORITHM}\n{}\n{}/{}/tc3_request\n{hashed}",
            self.timestamp,
            self.date(),
            self.service
        )
    }

    pub fn signature(&self) -> String {
        let key = format!("TC3{}", self.secret_key.expose());
        let date = hmac(key.as_bytes(), self.date().as_bytes());
        let service = hmac(&date, self.service.as_bytes());
        let signing = hmac(&service, b"tc3_request");
        hex::encode(hmac(&signing, self.string_to_sign().as_bytes()))
    }

    /// The `Authorization` header's value.
    pub fn authorization(&self) -> String {
        let (signed, _) = self.canonical_headers();
        format!(
            "{ALGORITHM} Credential={}/{}/{}/tc3_request, SignedHeaders={signed}, Signature={}",
            self.secret_id,
            self.date(),
            self.service,
            self.signature()
        )
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Year, month, day of the day `days` after 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tencent's published example of the v3 signature (a CVM `DescribeInstances` call; the
    /// asterisks are part of the example's key).
    #[test]
    fn tencents_published_example_signs_as_published() {
        let payload = br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let key = Secret::new("Gu5t9xGARNpq86cd98joQYCN3*******");
        let signing = Signing {
            secret_id: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
            secret_key: &key,
            service: "cvm",
            timestamp: 1_551_113_065,
            headers: &[
                ("Content-Type", "application/json; charset=utf-8"),
                ("Host", "cvm.tencentcloudapi.com"),
            ],
            payload,
        };
        assert_eq!(
            signing.canonical_request(),
            "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\n\
             content-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            signing.string_to_sign(),
            "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n\
             5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            signing.signature(),
            "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
        );
        assert_eq!(
            signing.authorization(),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/\
             tc3_request, SignedHeaders=content-type;host, \
             Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
        );
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        let date = |timestamp| {
            Signing {
                secret_id: "",
                secret_key: &Secret::new(""),
                service: "scf",
                timestamp,
                headers: &[],
                payload: b"",
            }
            .date()
        };
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_551_113_065), "2019-02-25");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_798_761_599), "2026-12-31");
    }
}
