//! Parsing and writing Airflow connection URIs.

use super::{
    Connection, ConnectionError, EXTRA_JSON, MASK, airflow_schema_and_extra, invalid, mask_extra, normalize_type,
};
use serde_json::{Map, Value};

pub(super) fn parse(id: &str, uri: &str) -> Result<Connection, ConnectionError> {
    let uri = uri.trim();
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(invalid(id, "uri", "expected `type://…`, e.g. `postgres://user:password@host:5432/db`"));
    };
    if !is_scheme(scheme) {
        return Err(invalid(
            id,
            "conn_type",
            "the URI scheme must be letters, digits, `+`, `-` or `.`, starting with a letter",
        ));
    }
    let (conn_type, https) = normalize_type(scheme);
    if conn_type == "file" {
        return parse_file(id, rest);
    }

    // Airflow's `type://protocol://host…` keeps the protocol in the host.
    let (protocol, rest) = match rest.split_once("://") {
        Some((p, r)) if is_scheme(p) => (Some(p), r),
        _ => (None, rest),
    };

    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let tail = tail.split_once('#').map_or(tail, |(before, _)| before);
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));

    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (login, password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((l, p)) => (Some(decode(id, "login", l)?), Some(decode(id, "password", p)?)),
            None => (Some(decode(id, "login", u)?), None),
        },
    };

    let (host, port) = split_host_port(id, hostport)?;
    let host = match (protocol, host.is_empty()) {
        (_, true) => None,
        (Some(p), false) => Some(format!("{p}://{}", decode(id, "host", host)?)),
        (None, false) => Some(decode(id, "host", host)?),
    };

    let path = path.strip_prefix('/').unwrap_or(path);
    let mut airflow_schema = if path.is_empty() { None } else { Some(decode(id, "schema", path)?) };

    let mut extra = parse_query(id, query)?;

    let mut conn = Connection { id: id.to_string(), conn_type, host, port, login, password, ..Default::default() };
    if https {
        if airflow_schema.is_some() {
            return Err(invalid(
                id,
                "schema",
                "an `https://` URI already sets the schema to https, so it cannot have a path; \
                 write `http://host:port/https` to name the schema in the path",
            ));
        }
        airflow_schema = Some("https".into());
    }
    // Airflow's own sqlite form keeps the file in the host: `sqlite://%2Fpath%2Fto.db`.
    if conn.conn_type == "sqlite" && airflow_schema.is_none() {
        airflow_schema = conn.host.take();
    }
    conn.set_airflow_schema(airflow_schema, &mut extra)?;
    conn.extra = extra;
    Ok(conn)
}

/// `file://<dir>?query`: the directory keeps its slashes, so `file:///abs/dir` is
/// `/abs/dir` and `file://rel/dir` is `rel/dir` (relative to the working directory).
fn parse_file(id: &str, rest: &str) -> Result<Connection, ConnectionError> {
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let database = Some(decode(id, "database", path)?).filter(|p| !p.is_empty());
    let extra = parse_query(id, query)?;
    Ok(Connection { id: id.to_string(), conn_type: "file".into(), database, extra, ..Default::default() })
}

/// The URI; with `mask`, the password and secret extra values are `***`.
pub(super) fn render(c: &Connection, mask: bool) -> String {
    if c.conn_type == "file" {
        let mut uri = format!("file://{}", encode(c.database.as_deref().unwrap_or_default(), b"/"));
        if !c.extra.is_empty() {
            uri.push('?');
            uri.push_str(&render_query(&c.extra, mask));
        }
        return uri;
    }
    let mut uri = format!("{}://", c.conn_type.to_ascii_lowercase().replace('_', "-"));
    let (protocol, host) = match c.host.as_deref().and_then(|h| h.split_once("://")) {
        Some((p, h)) => (Some(p), Some(h)),
        None => (None, c.host.as_deref()),
    };
    if let Some(protocol) = protocol {
        uri.push_str(protocol);
        uri.push_str("://");
    }

    let mut authority = String::new();
    if let Some(login) = &c.login {
        authority.push_str(&encode(login, b""));
    }
    if let Some(password) = &c.password {
        authority.push(':');
        authority.push_str(&if mask { MASK.to_string() } else { encode(password, b"") });
    }
    if !authority.is_empty() {
        authority.push('@');
        uri.push_str(&authority);
    }

    let mut host_block = host.filter(|h| !h.is_empty()).map(|h| encode(h, b"")).unwrap_or_default();
    if let Some(port) = c.port {
        let sep = if host_block.is_empty() && authority.is_empty() { "@:" } else { ":" };
        host_block.push_str(&format!("{sep}{port}"));
    }
    let (schema, extra) = airflow_schema_and_extra(c);
    let schema = schema.filter(|s| !s.is_empty());
    if let Some(schema) = schema {
        // SQLite paths keep their slashes: `sqlite:////abs/path.db`.
        let keep: &[u8] = if c.conn_type == "sqlite" { b"/" } else { b"" };
        host_block.push('/');
        host_block.push_str(&encode(schema, keep));
    }
    uri.push_str(&host_block);

    if !extra.is_empty() {
        uri.push_str(if schema.is_some() { "?" } else { "/?" });
        uri.push_str(&render_query(&extra, mask));
    }
    uri
}

/// Airflow writes `k=v&…` when every value is a string (so the query reads back as the
/// same mapping), else `__extra__=<JSON>`.
fn render_query(extra: &Map<String, Value>, mask: bool) -> String {
    let flat = extra.iter().all(|(k, v)| v.is_string() && k != EXTRA_JSON);
    if flat {
        let pairs = extra.iter().map(|(k, v)| {
            let value = v.as_str().unwrap_or_default();
            let value = if mask && super::is_secret_key(k) { MASK.to_string() } else { encode_query(value) };
            format!("{}={value}", encode_query(k))
        });
        pairs.collect::<Vec<_>>().join("&")
    } else {
        let json = Value::Object(extra.clone());
        let json = if mask { mask_extra(&json) } else { json };
        format!("{EXTRA_JSON}={}", encode_query(&json.to_string()))
    }
}

fn parse_query(id: &str, query: &str) -> Result<Map<String, Value>, ConnectionError> {
    // Python's `dict(parse_qsl(query, keep_blank_values=True))`: later keys win.
    let mut pairs = Map::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let key = decode_query(id, "extra", key)?;
        let value = decode_query(id, &format!("extra.{key}"), value)?;
        pairs.insert(key, Value::String(value));
    }
    match pairs.remove(EXTRA_JSON) {
        None => Ok(pairs),
        Some(Value::String(json)) => match serde_json::from_str::<Value>(&json) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(invalid(id, "extra", "the `__extra__` query parameter is not a JSON object")),
        },
        Some(_) => Ok(pairs),
    }
}

fn split_host_port<'a>(id: &str, hostport: &'a str) -> Result<(&'a str, Option<u16>), ConnectionError> {
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        // An IPv6 literal: `[::1]:5432`; the brackets are not part of the host.
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(invalid(id, "host", "an IPv6 address opened with `[` is not closed with `]`"));
        };
        (host, after.strip_prefix(':').unwrap_or(after))
    } else {
        hostport.split_once(':').unwrap_or((hostport, ""))
    };
    if port.is_empty() {
        return Ok((host, None));
    }
    // Never quote the text: with an unencoded `/` or `@` in a password, part of the
    // password lands here.
    let port = port.parse::<u16>().map_err(|_| {
        invalid(
            id,
            "port",
            "expected a number from 0 to 65535 (a password with `/`, `?`, `#`, `@` or `:` must be percent-encoded)",
        )
    })?;
    Ok((host, Some(port)))
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Python's `quote(text, safe=keep)`: all but RFC 3986's unreserved bytes (and `keep`)
/// become `%XX`.
pub(crate) fn encode(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if is_unreserved(b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Python's `quote_plus`: as [`encode`], with spaces as `+`.
fn encode_query(text: &str) -> String {
    encode(text, b" ").replace(' ', "+")
}

/// Python's `unquote`: `%XX` becomes its byte; a `%` not followed by two hex digits stays.
pub(crate) fn decode(id: &str, field: &str, text: &str) -> Result<String, ConnectionError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                // Two hex digits make a byte: high < 16 and low < 16.
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| invalid(id, field, "it is not UTF-8 text once percent-decoded"))
}

/// Python's `unquote_plus`, for query keys and values.
fn decode_query(id: &str, field: &str, text: &str) -> Result<String, ConnectionError> {
    decode(id, field, &text.replace('+', " "))
}
