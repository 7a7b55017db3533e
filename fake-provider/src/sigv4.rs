//! Verifies an AWS Signature Version 4 (`Authorization: AWS4-HMAC-SHA256 Credential=...,
//! SignedHeaders=..., Signature=...`) the way an AWS service does: the credential scope must
//! name the fake's access key, region and service (`bedrock`) and the day of `x-amz-date`, which
//! must be within 5 minutes of now; a session token must be the fake's; then the signature is
//! recomputed with AWS's own signer (`aws-sigv4`) over the method, the path and query as
//! received, the headers that `SignedHeaders` names with their received values, and the SHA-256
//! of the body as received (never a hash the request claims, so a changed body is refused), and
//! must equal the one given.
//!
//! Refusals carry AWS's error code, status and message: `MissingAuthenticationTokenException`
//! (403) without an `Authorization` header, `IncompleteSignatureException` (400) for a
//! malformed one, `UnrecognizedClientException` (403) for an unknown access key or session
//! token, `InvalidSignatureException` (403) for a wrong scope, a stale date or a signature that
//! does not match.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::date_time::{DateTime, Format};
use axum::http::{header, HeaderMap, Method, Uri};

/// The signing name of Bedrock (its runtime endpoint is `bedrock-runtime`, its signing name
/// `bedrock`).
pub const SERVICE: &str = "bedrock";
/// The clock skew AWS tolerates.
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The credentials and region the fake accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Set for temporary credentials: requests must then carry it as `x-amz-security-token`.
    pub session_token: Option<String>,
    pub region: String,
}

/// Why a request is refused: AWS's error code, the HTTP status and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn incomplete(message: impl Into<String>) -> Self {
        Refusal {
            status: 400,
            code: "IncompleteSignatureException",
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Refusal {
            status: 403,
            code: "InvalidSignatureException",
            message: message.into(),
        }
    }

    fn unrecognized() -> Self {
        Refusal {
            status: 403,
            code: "UnrecognizedClientException",
            message: "The security token included in the request is invalid.".to_owned(),
        }
    }

    fn mismatch() -> Self {
        Self::invalid(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details.",
        )
    }
}

/// A verified signature: what the request signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `SignedHeaders` as received.
    pub signed_headers: String,
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
struct Authorization<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, Refusal> {
    let (algorithm, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if algorithm != ALGORITHM {
        return Err(Refusal::incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'"
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let missing: Vec<String> = [
        ("Credential", credential.is_none()),
        ("Signature", signature.is_none()),
        ("SignedHeaders", signed_headers.is_none()),
    ]
    .iter()
    .filter(|(_, absent)| *absent)
    .map(|(name, _)| format!("Authorization header requires '{name}' parameter."))
    .collect();
    match (credential, signed_headers, signature) {
        (Some(credential), Some(signed_headers), Some(signature)) => Ok(Authorization {
            credential,
            signed_headers,
            signature,
        }),
        _ => Err(Refusal::incomplete(format!(
            "{} Authorization={value}",
            missing.join(" ")
        ))),
    }
}

/// `20150830T123600Z` as a time.
fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let b = value.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        value.get(0..4)?,
        value.get(4..6)?,
        value.get(6..8)?,
        value.get(9..11)?,
        value.get(11..13)?,
        value.get(13..15)?
    );
    let parsed = DateTime::from_str(&rfc3339, Format::DateTime).ok()?;
    SystemTime::try_from(parsed).ok()
}

/// A time in `x-amz-date`'s basic ISO-8601 format.
fn amz_date(time: SystemTime) -> String {
    let mut t = DateTime::from(time);
    t.set_subsec_nanos(0);
    t.fmt(Format::DateTime)
        .unwrap_or_default()
        .replace(['-', ':'], "")
}

/// Checks the date of the request against `now` and the credential scope.
fn check_date(date: &str, scope_day: &str, now: SystemTime) -> Result<SystemTime, Refusal> {
    let Some(time) = parse_amz_date(date) else {
        return Err(Refusal::invalid(format!(
            "Date must be in ISO-8601 'basic format'. Got '{date}'. See \
             http://en.wikipedia.org/wiki/ISO_8601"
        )));
    };
    if date.get(..8) != Some(scope_day) {
        return Err(Refusal::invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '{scope_day}' != '{}', from '{date}'.",
            date.get(..8).unwrap_or_default()
        )));
    }
    if time + MAX_SKEW < now {
        return Err(Refusal::invalid(format!(
            "Signature expired: {date} is now earlier than {} ({} - 5 min.)",
            amz_date(now - MAX_SKEW),
            amz_date(now)
        )));
    }
    if time > now + MAX_SKEW {
        return Err(Refusal::invalid(format!(
            "Signature not yet current: {date} is still later than {} ({} + 5 min.)",
            amz_date(now + MAX_SKEW),
            amz_date(now)
        )));
    }
    Ok(time)
}

/// The `(name, value)` pairs of the headers `signed` names, as received (`host` from the
/// `:authority` of an HTTP/2 request when there is no `Host` header).
fn signed_values<'a>(
    signed: &[&'a str],
    uri: &'a Uri,
    headers: &'a HeaderMap,
) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::new();
    for &name in signed {
        let mut values = headers.get_all(name).iter().peekable();
        if values.peek().is_none() && name == header::HOST.as_str() {
            if let Some(authority) = uri.authority() {
                out.push((name, authority.as_str()));
            }
            continue;
        }
        // A value that is not visible ASCII cannot be signed as sent: left out, the signature
        // no longer matches.
        out.extend(values.filter_map(|v| v.to_str().ok()).map(|v| (name, v)));
    }
    out
}

/// Verifies the SigV4 signature of a request received at `now`.
pub fn verify(
    keys: &Keys,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<Verified, Refusal> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Refusal {
            status: 403,
            code: "MissingAuthenticationTokenException",
            message: "Missing Authentication Token".to_owned(),
        });
    };
    let value = value.to_str().map_err(|_| Refusal::mismatch())?;
    let auth = parse_authorization(value)?;
    let scope: Vec<&str> = auth.credential.split('/').collect();
    let [access_key_id, day, region, service, terminator] = scope.as_slice() else {
        return Err(Refusal::incomplete(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            auth.credential
        )));
    };
    if *terminator != "aws4_request" {
        return Err(Refusal::invalid(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not \
             '{terminator}'. "
        )));
    }
    if *access_key_id != keys.access_key_id {
        return Err(Refusal::unrecognized());
    }
    if *region != keys.region {
        return Err(Refusal::invalid(format!(
            "Credential should be scoped to a valid region, not '{region}'. "
        )));
    }
    if *service != SERVICE {
        return Err(Refusal::invalid(format!(
            "Credential should be scoped to correct service: '{SERVICE}'. "
        )));
    }
    let Some(date) = headers.get("x-amz-date").and_then(|v| v.to_str().ok()) else {
        return Err(Refusal::incomplete(format!(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
             header. Authorization={value}"
        )));
    };
    let time = check_date(date, day, now)?;
    let token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok());
    if token != keys.session_token.as_deref() {
        return Err(Refusal::unrecognized());
    }
    let signed: Vec<&str> = auth.signed_headers.split(';').collect();
    if !signed.contains(&header::HOST.as_str()) {
        return Err(Refusal::invalid(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let expected = recompute(
        keys,
        token,
        time,
        method,
        uri,
        &signed_values(&signed, uri, headers),
        body,
    )?;
    if expected != auth.signature {
        return Err(Refusal::mismatch());
    }
    Ok(Verified {
        signed_headers: auth.signed_headers.to_owned(),
    })
}

/// The signature AWS's signer computes for this request.
fn recompute(
    keys: &Keys,
    token: Option<&str>,
    time: SystemTime,
    method: &Method,
    uri: &Uri,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<String, Refusal> {
    // Every header the request signed is given to the signer, and no other; the host comes from
    // the headers, so the authority here is never read.
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("http://localhost{path_and_query}");
    let mut settings = SigningSettings::default();
    settings.excluded_headers = None;
    let identity: Identity = Credentials::new(
        keys.access_key_id.clone(),
        keys.secret_access_key.clone(),
        token.map(str::to_owned),
        None,
        "fake-provider",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&keys.region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|_| Refusal::mismatch())?
        .into();
    let request = SignableRequest::new(
        method.as_str(),
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|_| Refusal::mismatch())?;
    let output = sign(request, &params).map_err(|_| Refusal::mismatch())?;
    Ok(output.signature().to_owned())
}

#[cfg(test)]
mod tests;
