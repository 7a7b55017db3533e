//! The verifier against requests signed by AWS's own signer, as an SDK or Envoy signs them.

use super::*;
use axum::http::{HeaderName, HeaderValue};

fn keys() -> Keys {
    Keys {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
        region: "us-east-1".into(),
    }
}

const PATH: &str = "/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/converse";
const BODY: &[u8] = br#"{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}"#;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// 2025-09-21T10:16:04Z.
const T0: u64 = 1_758_449_764;

/// A request to `path_and_query` signed with `signer` at `time` (the host, content type and
/// `extra` headers signed), as an SDK sends it.
fn signed(
    signer: &Keys,
    path_and_query: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> (Uri, HeaderMap) {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("host", "bedrock-runtime.us-east-1.amazonaws.com"),
        ("content-type", "application/json"),
    ];
    pairs.extend_from_slice(extra);
    let identity: Identity = Credentials::new(
        signer.access_key_id.clone(),
        signer.secret_access_key.clone(),
        signer.session_token.clone(),
        None,
        "test",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&signer.region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("https://bedrock-runtime.us-east-1.amazonaws.com{path_and_query}");
    let request = SignableRequest::new(
        "POST",
        url,
        pairs.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let mut headers = HeaderMap::new();
    for (k, v) in pairs {
        headers.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    for (k, v) in instructions.headers() {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    (path_and_query.parse().unwrap(), headers)
}

fn check(
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<Verified, Refusal> {
    verify(&keys(), &Method::POST, uri, headers, body, now)
}

#[test]
fn a_request_signed_by_aws_sigv4_is_accepted() {
    let (uri, headers) = signed(&keys(), PATH, &[], BODY, at(T0));
    let ok = check(&uri, &headers, BODY, at(T0 + 30)).unwrap();
    assert_eq!(ok.signed_headers, "content-type;host;x-amz-date");
    // A query, an inference-profile ARN in the path and more signed headers.
    let arn = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream?b=2&a=1";
    let (uri, headers) = signed(
        &keys(),
        arn,
        &[
            ("x-amz-content-sha256", "ignored-by-the-check"),
            ("accept", "application/vnd.amazon.eventstream"),
        ],
        BODY,
        at(T0),
    );
    check(&uri, &headers, BODY, at(T0)).unwrap();
    // Headers the client did not sign may be added on the way.
    let (uri, mut headers) = signed(&keys(), PATH, &[], BODY, at(T0));
    headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
    headers.insert("user-agent", HeaderValue::from_static("envoy"));
    check(&uri, &headers, BODY, at(T0)).unwrap();
}

#[test]
fn a_changed_body_byte_is_refused() {
    let (uri, headers) = signed(&keys(), PATH, &[], BODY, at(T0));
    let mut tampered = BODY.to_vec();
    let i = tampered.iter().position(|b| *b == b'H').unwrap();
    tampered[i] = b'J';
    let err = check(&uri, &headers, &tampered, at(T0)).unwrap_err();
    assert_eq!(err, Refusal::mismatch());
    assert_eq!((err.status, err.code), (403, "InvalidSignatureException"));
}

#[test]
fn a_wrong_secret_is_refused() {
    let mut other = keys();
    other.secret_access_key = "not-the-secret".into();
    let (uri, headers) = signed(&other, PATH, &[], BODY, at(T0));
    assert_eq!(
        check(&uri, &headers, BODY, at(T0)).unwrap_err(),
        Refusal::mismatch()
    );
}

#[test]
fn a_changed_signed_header_path_or_method_is_refused() {
    let (uri, mut headers) = signed(&keys(), PATH, &[], BODY, at(T0));
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    assert_eq!(
        check(&uri, &headers, BODY, at(T0)).unwrap_err(),
        Refusal::mismatch()
    );
    let (_, headers) = signed(&keys(), PATH, &[], BODY, at(T0));
    let other: Uri = "/model/amazon.nova-pro-v1%3A0/converse".parse().unwrap();
    assert_eq!(
        check(&other, &headers, BODY, at(T0)).unwrap_err(),
        Refusal::mismatch()
    );
    let (uri, headers) = signed(&keys(), PATH, &[], BODY, at(T0));
    let err = verify(&keys(), &Method::PUT, &uri, &headers, BODY, at(T0)).unwrap_err();
    assert_eq!(err, Refusal::mismatch());
}

#[test]
fn unknown_keys_scopes_and_tokens_are_refused() {
    let mut other = keys();
    other.access_key_id = "AKIDOTHER".into();
    let (uri, headers) = signed(&other, PATH, &[], BODY, at(T0));
    let err = check(&uri, &headers, BODY, at(T0)).unwrap_err();
    assert_eq!(err.code, "UnrecognizedClientException");
    assert_eq!(
        err.message,
        "The security token included in the request is invalid."
    );

    let mut other = keys();
    other.region = "eu-west-1".into();
    let (uri, headers) = signed(&other, PATH, &[], BODY, at(T0));
    let err = check(&uri, &headers, BODY, at(T0)).unwrap_err();
    assert_eq!((err.status, err.code), (403, "InvalidSignatureException"));
    assert!(err
        .message
        .starts_with("Credential should be scoped to a valid region"));

    // Temporary credentials: the token must be sent and be the fake's.
    let mut temporary = keys();
    temporary.session_token = Some("FwoGZXIvYXdzEXAMPLE".into());
    let (uri, headers) = signed(&temporary, PATH, &[], BODY, at(T0));
    verify(&temporary, &Method::POST, &uri, &headers, BODY, at(T0)).unwrap();
    assert_eq!(
        check(&uri, &headers, BODY, at(T0)).unwrap_err(),
        Refusal::unrecognized()
    );
    let (uri, headers) = signed(&keys(), PATH, &[], BODY, at(T0));
    let err = verify(&temporary, &Method::POST, &uri, &headers, BODY, at(T0)).unwrap_err();
    assert_eq!(err, Refusal::unrecognized());
}

#[test]
fn stale_or_future_dates_are_refused() {
    let (uri, headers) = signed(&keys(), PATH, &[], BODY, at(T0));
    check(&uri, &headers, BODY, at(T0 + 299)).unwrap();
    let err = check(&uri, &headers, BODY, at(T0 + 301)).unwrap_err();
    assert_eq!(
        err.message,
        "Signature expired: 20250921T101604Z is now earlier than 20250921T101605Z \
         (20250921T102105Z - 5 min.)"
    );
    let err = check(&uri, &headers, BODY, at(T0 - 301)).unwrap_err();
    assert!(
        err.message
            .starts_with("Signature not yet current: 20250921T101604Z"),
        "{}",
        err.message
    );
}

#[test]
fn missing_or_malformed_authorization() {
    let uri: Uri = PATH.parse().unwrap();
    let err = check(&uri, &HeaderMap::new(), BODY, at(T0)).unwrap_err();
    assert_eq!(
        (err.status, err.code),
        (403, "MissingAuthenticationTokenException")
    );
    assert_eq!(err.message, "Missing Authentication Token");

    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250921/us-east-1/bedrock/aws4_request",
        ),
    );
    let err = check(&uri, &headers, BODY, at(T0)).unwrap_err();
    assert_eq!(
        (err.status, err.code),
        (400, "IncompleteSignatureException")
    );
    assert!(
        err.message.starts_with(
            "Authorization header requires 'Signature' parameter. Authorization header requires \
         'SignedHeaders' parameter."
        ),
        "{}",
        err.message
    );

    // Signed without the host: refused before any recomputation.
    let (uri, mut headers) = signed(&keys(), PATH, &[], BODY, at(T0));
    let auth = headers["authorization"]
        .to_str()
        .unwrap()
        .replace("content-type;host;x-amz-date", "content-type;x-amz-date");
    headers.insert("authorization", HeaderValue::from_str(&auth).unwrap());
    let err = check(&uri, &headers, BODY, at(T0)).unwrap_err();
    assert!(
        err.message.contains("must be a 'SignedHeader'"),
        "{}",
        err.message
    );
}

#[test]
fn amz_dates_round_trip() {
    assert_eq!(amz_date(at(T0)), "20250921T101604Z");
    assert_eq!(parse_amz_date("20250921T101604Z"), Some(at(T0)));
    assert_eq!(parse_amz_date("2025-09-21T10:16:04Z"), None);
    assert_eq!(parse_amz_date("20251321T101604Z"), None);
}
