//! Docker Compose's variable interpolation, as the tests that read the generated compose
//! file need it (to run its services as processes, or compare it with other manifests).

use std::collections::BTreeMap;

/// Compose's interpolation: `$$` is a literal `$`; `$VAR`, `${VAR}`, `${VAR:-default}`,
/// `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}`.
/// An unset `${VAR}` is empty, as compose makes it (with a warning). No nesting.
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unclosed `${{` in `{text}`"))?;
            out.push_str(&substitute(&body[..end], vars)?);
            rest = &body[end + 1..];
        } else {
            let len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if len == 0 {
                return Err(format!("invalid `$` in `{text}`: write `$$` for a literal `$`"));
            }
            out.push_str(vars.get(&after[..len]).map_or("", String::as_str));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// One `${...}` body.
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let (name, op, arg) = match expr.find([':', '-', '?', '+']) {
        None => (expr, "", ""),
        Some(i) => {
            let op_len = if expr[i..].starts_with(':') { 2 } else { 1 };
            let op = expr.get(i..i + op_len).ok_or_else(|| format!("invalid interpolation `${{{expr}}}`"))?;
            (&expr[..i], op, &expr[i + op_len..])
        }
    };
    let value = vars.get(name);
    let non_empty = value.filter(|v| !v.is_empty());
    let missing = || format!("required variable {name} is missing a value: {arg}");
    Ok(match op {
        "" => value.cloned().unwrap_or_default(),
        ":-" => non_empty.map_or_else(|| arg.to_string(), Clone::clone),
        "-" => value.map_or_else(|| arg.to_string(), Clone::clone),
        ":?" => non_empty.cloned().ok_or_else(missing)?,
        "?" => value.cloned().ok_or_else(missing)?,
        ":+" => non_empty.map_or_else(String::new, |_| arg.to_string()),
        "+" => value.map_or_else(String::new, |_| arg.to_string()),
        _ => return Err(format!("invalid interpolation `${{{expr}}}`")),
    })
}
