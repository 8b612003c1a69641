//! Vectors from AWS's SigV4 test suite and documentation (`get-vanilla`, the IAM `ListUsers`
//! example, ...), all signed at 2015-08-30T12:36:00Z with AWS's example key; botocore computes
//! the same signatures.

use super::*;

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const AMZ_DATE: &str = "20150830T123600Z";

fn at(amz_date: &str) -> DateTime {
    parse_amz_date(amz_date).expect("valid date")
}

fn secrets(id: &str) -> Option<&'static str> {
    (id == AKID).then_some(SECRET)
}

fn auth(service: &str, signed_headers: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/20150830/us-east-1/{service}/aws4_request, \
         SignedHeaders={signed_headers}, Signature={signature}"
    )
}

/// `(method, path, query, headers, body)` checked at the vectors' own date.
fn check(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    service: &str,
) -> Result<Verified, ApiError> {
    let request = HttpRequest { method, path, query, headers, body };
    verify(&request, service, at(AMZ_DATE), secrets)
}

const GET_VANILLA: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

fn get_vanilla_headers(signature: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Host", "example.amazonaws.com".into()),
        ("X-Amz-Date", AMZ_DATE.into()),
        ("Authorization", auth("service", "host;x-amz-date", signature)),
    ]
}

fn borrow<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

#[test]
fn get_vanilla() {
    let headers = get_vanilla_headers(GET_VANILLA);
    let verified = check("GET", "/", "", &borrow(&headers), b"", "service").expect("valid");
    assert_eq!(verified, Verified { access_key_id: AKID.into(), region: "us-east-1".into() });
}

#[test]
fn get_vanilla_query_order_key_case() {
    let sig = "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500";
    let headers = get_vanilla_headers(sig);
    check("GET", "/", "Param2=value2&Param1=value1", &borrow(&headers), b"", "service").expect("valid");
}

#[test]
fn post_x_www_form_urlencoded() {
    let sig = "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a";
    let authorization = auth("service", "content-type;host;x-amz-date", sig);
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Host", "example.amazonaws.com"),
        ("X-Amz-Date", AMZ_DATE),
        ("Authorization", authorization.as_str()),
    ];
    check("POST", "/", "", &headers, b"Param1=value1", "service").expect("valid");
    let tampered = check("POST", "/", "", &headers, b"Param1=value2", "service").unwrap_err();
    assert_eq!((tampered.code, tampered.status), ("SignatureDoesNotMatch", 403));
}

/// The example of AWS's "Create a signed AWS API request" documentation, with its
/// intermediate values.
#[test]
fn iam_list_users_documentation_example() {
    let key = signing_key(SECRET, "20150830", "us-east-1", "iam");
    assert_eq!(encode_hex(&key), "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
        ("Host", "iam.amazonaws.com"),
        ("X-Amz-Date", AMZ_DATE),
    ];
    let request = HttpRequest {
        method: "GET",
        path: "/",
        query: "Action=ListUsers&Version=2010-05-08",
        headers: &headers,
        body: b"",
    };
    let canonical = canonical_request(&request, &["content-type", "host", "x-amz-date"], false).expect("headers");
    assert_eq!(
        encode_hex(&Sha256::digest(canonical.as_bytes())),
        "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
    );
    let sig = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
    let authorization = auth("iam", "content-type;host;x-amz-date", sig);
    let mut signed = headers.to_vec();
    signed.push(("Authorization", &authorization));
    check("GET", "/", request.query, &signed, b"", "iam").expect("valid");

    let params = SigningParams {
        access_key_id: AKID,
        secret_access_key: SECRET,
        region: "us-east-1",
        service: "iam",
        time: at(AMZ_DATE),
    };
    assert_eq!(sign(&request, &params), (AMZ_DATE.to_string(), authorization));
}

/// The same call presigned (`X-Amz-Signature` in the query string), as botocore presigns it.
#[test]
fn iam_list_users_presigned() {
    let query = "Action=ListUsers&Version=2010-05-08&X-Amz-Algorithm=AWS4-HMAC-SHA256\
                 &X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fiam%2Faws4_request\
                 &X-Amz-Date=20150830T123600Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host\
                 &X-Amz-Signature=c1d81d2c1667f724b714de8de01eb28808ee3df2bd3757c049afb139adde2df0";
    let headers = [("Host", "iam.amazonaws.com")];
    check("GET", "/", query, &headers, b"", "iam").expect("valid");
    let request = HttpRequest { method: "GET", path: "/", query, headers: &headers, body: b"" };
    // Valid for 60 seconds only.
    let late = verify(&request, "iam", at("20150830T123701Z"), secrets).unwrap_err();
    assert_eq!((late.code, late.status), ("SignatureDoesNotMatch", 403));
    assert!(late.message.starts_with("Signature expired: 20150830T123600Z is now earlier than"), "{late:?}");
    let changed = query.replace("ListUsers", "ListRoles");
    let err = check("GET", "/", &changed, &headers, b"", "iam").unwrap_err();
    assert_eq!(err.code, "SignatureDoesNotMatch");
}

/// Dot segments and empty segments go; the encoded path is encoded again (botocore's value).
#[test]
fn path_is_normalized_and_encoded_twice() {
    assert_eq!(canonical_uri("/a%20b/../c/./d%2Fe"), "/c/d%252Fe");
    assert_eq!(canonical_uri(""), "/");
    assert_eq!(canonical_uri("//"), "/");
    assert_eq!(canonical_uri("/a/"), "/a/");
    let sig = "02843c2f1d537fa90d9b7004f7a27289532055f9048b5b0f10d646a4d8be32c0";
    let headers = get_vanilla_headers(sig);
    check("GET", "/a%20b/../c/./d%2Fe", "y=~&x=a%20b", &borrow(&headers), b"", "service").expect("valid");
}

#[test]
fn header_values_are_trimmed_and_repeated_headers_joined() {
    let headers = [("Host", "h"), ("X-A", "  one   two "), ("x-a", "three")];
    let request = HttpRequest { method: "GET", path: "/", query: "", headers: &headers, body: b"" };
    let canonical = canonical_request(&request, &["host", "x-a"], false).expect("headers");
    assert!(canonical.contains("\nx-a:one two,three\n"), "{canonical}");
}

/// The request an SDK sends to the emulator, signed by botocore.
#[test]
fn elasticache_post_signed_by_botocore() {
    let sig = "428d931e0e3a702938e08ed474cc439fcaeb08aad615d30d30543f77c6dabe52";
    let authorization = auth("elasticache", "content-type;host;x-amz-date", sig);
    let headers = [
        ("host", "127.0.0.1:4566"),
        ("content-type", "application/x-www-form-urlencoded; charset=utf-8"),
        ("x-amz-date", AMZ_DATE),
        ("authorization", authorization.as_str()),
        ("user-agent", "not signed, so it may change"),
    ];
    let body = b"Action=DescribeCacheClusters&Version=2015-02-02";
    check("POST", "/", "", &headers, body, "elasticache").expect("valid");
    let err = check("POST", "/", "", &headers, body, "iam").unwrap_err();
    assert_eq!((err.code, err.status), ("SignatureDoesNotMatch", 403));
    assert!(err.message.contains("correct service: 'iam'"), "{err:?}");
}

#[test]
fn unknown_access_key_is_invalid_client_token_id() {
    let headers = get_vanilla_headers(GET_VANILLA);
    let request = HttpRequest { method: "GET", path: "/", query: "", headers: &borrow(&headers), body: b"" };
    let err = verify(&request, "service", at(AMZ_DATE), |_| None::<String>).unwrap_err();
    assert_eq!((err.code, err.status), ("InvalidClientTokenId", 403));
}

#[test]
fn wrong_secret_or_signature_does_not_match() {
    let headers = get_vanilla_headers(GET_VANILLA);
    let request = HttpRequest { method: "GET", path: "/", query: "", headers: &borrow(&headers), body: b"" };
    let err = verify(&request, "service", at(AMZ_DATE), |_| Some("another secret")).unwrap_err();
    assert_eq!((err.code, err.status), ("SignatureDoesNotMatch", 403));
    assert!(!err.message.contains(SECRET) && !err.message.contains("another secret"));
    for bad in ["0".repeat(64), "zz".into(), "abc".into(), GET_VANILLA[..62].into()] {
        let headers = get_vanilla_headers(&bad);
        let err = check("GET", "/", "", &borrow(&headers), b"", "service").unwrap_err();
        assert_eq!((err.code, err.status), ("SignatureDoesNotMatch", 403), "{bad}");
    }
    // Changing the method, path or a signed header breaks the signature; an unsigned one does not.
    let headers = get_vanilla_headers(GET_VANILLA);
    assert!(check("POST", "/", "", &borrow(&headers), b"", "service").is_err());
    assert!(check("GET", "/x", "", &borrow(&headers), b"", "service").is_err());
    let mut other_host = headers.clone();
    other_host[0].1 = "evil.example.com".into();
    assert!(check("GET", "/", "", &borrow(&other_host), b"", "service").is_err());
    let mut extra = headers.clone();
    extra.push(("X-Unsigned", "anything".into()));
    assert!(check("GET", "/", "", &borrow(&extra), b"", "service").is_ok());
}

#[test]
fn missing_or_malformed_signatures_are_incomplete() {
    let incomplete = |headers: &[(&str, &str)], query: &str| {
        let err = check("GET", "/", query, headers, b"", "service").unwrap_err();
        assert_eq!((err.code, err.status), ("IncompleteSignature", 400), "{err:?}");
        err
    };
    incomplete(&[("Host", "example.amazonaws.com"), ("X-Amz-Date", AMZ_DATE)], "");
    let without_date =
        incomplete(&[("Host", "example.amazonaws.com"), ("Authorization", &auth("service", "host", GET_VANILLA))], "");
    assert!(without_date.message.contains("'X-Amz-Date' or a 'Date' header"), "{without_date:?}");
    let no_signature = format!("AWS4-HMAC-SHA256 Credential={AKID}/20150830/us-east-1/service/aws4_request");
    let err = incomplete(&[("X-Amz-Date", AMZ_DATE), ("Authorization", &no_signature)], "");
    assert!(err.message.contains("requires 'Signature'") && err.message.contains("requires 'SignedHeaders'"));
    incomplete(&[("X-Amz-Date", AMZ_DATE), ("Authorization", "AWS AKID:c2lnbmF0dXJl")], "");
    incomplete(&[("X-Amz-Date", AMZ_DATE), ("Authorization", "")], "");
    let short_scope = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1, SignedHeaders=host, Signature=00";
    incomplete(&[("X-Amz-Date", AMZ_DATE), ("Authorization", short_scope)], "");
    let headers = get_vanilla_headers(GET_VANILLA);
    let mut bad_date = borrow(&headers);
    bad_date[1].1 = "2015-08-30T12:36:00Z";
    incomplete(&bad_date, "");
    incomplete(&[("Host", "h")], "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20150830T123600Z");
    incomplete(&borrow(&headers), "X-Amz-Algorithm=AWS4-HMAC-SHA256");
}

#[test]
fn dates_more_than_15_minutes_off_are_refused() {
    let headers = get_vanilla_headers(GET_VANILLA);
    let headers = borrow(&headers);
    let request = HttpRequest { method: "GET", path: "/", query: "", headers: &headers, body: b"" };
    assert!(verify(&request, "service", at("20150830T125100Z"), secrets).is_ok());
    assert!(verify(&request, "service", at("20150830T122100Z"), secrets).is_ok());
    let late = verify(&request, "service", at("20150830T125101Z"), secrets).unwrap_err();
    assert_eq!((late.code, late.status), ("SignatureDoesNotMatch", 403));
    assert_eq!(
        late.message,
        "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z (20150830T125101Z - 15 min.)"
    );
    let early = verify(&request, "service", at("20150830T122059Z"), secrets).unwrap_err();
    assert_eq!((early.code, early.status), ("SignatureDoesNotMatch", 403));
    assert_eq!(
        early.message,
        "Signature not yet current: 20150830T123600Z is still later than 20150830T123559Z (20150830T122059Z + 15 min.)"
    );
}

#[test]
fn the_date_header_stands_in_for_x_amz_date() {
    let params = SigningParams {
        access_key_id: AKID,
        secret_access_key: SECRET,
        region: "eu-west-3",
        service: "elasticache",
        time: at(AMZ_DATE),
    };
    let headers = [("host", "localhost"), ("date", "Sun, 30 Aug 2015 12:36:00 GMT")];
    let request = HttpRequest { method: "POST", path: "/", query: "", headers: &headers, body: b"Action=X" };
    let (_, authorization) = sign(&request, &params);
    // Re-sign as a client using `Date` would: replace x-amz-date by date in the signed list.
    let key = signing_key(SECRET, "20150830", "eu-west-3", "elasticache");
    let canonical = canonical_request(&request, &["date", "host"], false).expect("headers");
    let sts = string_to_sign(AMZ_DATE, "20150830/eu-west-3/elasticache/aws4_request", &canonical);
    let sig = encode_hex(&hmac(&key, sts.as_bytes()).finalize().into_bytes());
    let by_date = format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/20150830/eu-west-3/elasticache/aws4_request, SignedHeaders=date;host, \
         Signature={sig}"
    );
    let mut signed = headers.to_vec();
    signed.push(("authorization", &by_date));
    let verified = verify(&HttpRequest { headers: &signed, ..request }, "elasticache", at(AMZ_DATE), secrets);
    assert_eq!(verified.expect("valid").region, "eu-west-3");
    assert!(authorization.contains("SignedHeaders=date;host;x-amz-date"), "{authorization}");
}

#[test]
fn sign_then_verify_round_trips() {
    let params = SigningParams {
        access_key_id: AKID,
        secret_access_key: SECRET,
        region: "us-west-2",
        service: "elasticache",
        time: at("20240229T235959Z"),
    };
    let headers = [("Host", "127.0.0.1:4566"), ("Content-Type", "application/x-www-form-urlencoded")];
    let body = b"Action=CreateCacheCluster&CacheClusterId=a%20b&Tags.Tag.1.Key=k";
    let request = HttpRequest { method: "POST", path: "/", query: "x=1", headers: &headers, body };
    let (amz_date, authorization) = sign(&request, &params);
    assert_eq!(amz_date, "20240229T235959Z");
    let mut signed = headers.to_vec();
    signed.push(("X-Amz-Date", &amz_date));
    signed.push(("Authorization", &authorization));
    let signed_request = HttpRequest { headers: &signed, ..request };
    let now = at("20240301T000500Z");
    let verified = verify(&signed_request, "elasticache", now, secrets).expect("valid");
    assert_eq!(verified.region, "us-west-2");
    let tampered = HttpRequest { body: b"Action=DeleteCacheCluster&CacheClusterId=a%20b", ..signed_request };
    assert_eq!(verify(&tampered, "elasticache", now, secrets).unwrap_err().code, "SignatureDoesNotMatch");
}

#[test]
fn amz_dates_parse_and_format() {
    assert_eq!(format_amz_date(at(AMZ_DATE)), AMZ_DATE);
    for bad in ["", "20150830T123600", "20150830 123600Z", "2015083xT123600Z", "20151330T123600Z"] {
        assert!(parse_amz_date(bad).is_none(), "{bad}");
    }
}
