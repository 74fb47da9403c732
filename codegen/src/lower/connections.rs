//! `connections:`: each connection, its secrets as `${ENV}` references, and its standalone URI.

use super::*;

pub(super) const CONNECTION_KEYS: &[&str] =
    &["id", "type", "description", "host", "port", "schema", "database", "login", "password", "extra", "standalone"];

impl Lowerer<'_> {
    pub(super) fn connection(&mut self, node: &Node, index: usize) -> Option<Connection> {
        let what = peek_id(node, "id").map_or(format!("connection #{}", index + 1), |id| format!("connection `{id}`"));
        let f = self.fields(node, &what, CONNECTION_KEYS)?;
        let id = self.required(&f, "id", &what, "add `id: my_connection`")?;
        let w = format!("connection `{}`", id.value);
        let conn_type = match self.opt_string(&f, "type", &w) {
            Some(t) => match ConnType::ALL.iter().find(|(n, _)| *n == t.value) {
                Some((_, ty)) => Sp::new(*ty, t.span),
                None => {
                    let names = ConnType::ALL.iter().map(|(n, _)| *n);
                    let hint = suggestion(&t.value, names.clone())
                        .unwrap_or_else(|| format!("known types: {}", names.collect::<Vec<_>>().join(", ")));
                    self.error("unknown-type", t.span, format!("unknown connection type `{}`", t.value), Some(hint));
                    return None;
                }
            },
            None => {
                self.missing(&f, "type", &w, "add `type:` (postgres, redis, http, sqlite or smtp)");
                return None;
            }
        };
        let password = match f.value("password") {
            Some(n) => {
                self.secret(n, &format!("the password of {w}"), &format!("{}_PASSWORD", id.value.to_uppercase()))
            }
            None => None,
        };
        let mut extra = BTreeMap::new();
        if let Some(node) = f.value("extra") {
            if let Value::Map(entries) = &node.value {
                for (key, value) in entries {
                    let Value::Str(key) = &key.value else { continue };
                    if is_secret_key(key)
                        && let Value::Str(text) = &value.value
                        && env_ref(text).is_none()
                    {
                        let env = format!("{}_{}", id.value, key).to_uppercase();
                        self.secret(value, &format!("`extra.{key}` of {w}"), &env);
                        continue;
                    }
                    extra.insert(key.clone(), to_json(value));
                }
            } else {
                self.wrong_type(node, &format!("`extra` of {w}"), "a mapping");
            }
        }
        let port = f.value("port").and_then(|n| self.integer::<u16>(n, &format!("`port` of {w}"), 1, 65535));
        let standalone =
            self.opt_string(&f, "standalone", &w).filter(|uri| self.standalone_uri(uri, conn_type.value, &id.value));
        Some(Connection {
            description: self.opt_string(&f, "description", &w).map(|s| s.value).unwrap_or_default(),
            host: self.opt_string(&f, "host", &w).map(|s| s.value),
            port: port.map(|p| p.value),
            schema: self.opt_string(&f, "schema", &w).map(|s| s.value),
            database: self.opt_string(&f, "database", &w).map(|s| s.value),
            login: self.opt_string(&f, "login", &w).map(|s| s.value),
            id,
            conn_type,
            password,
            extra,
            standalone,
        })
    }

    /// Whether a connection's `standalone:` URI is usable: `type://…` of the declared type,
    /// or of a stand-in for it (sqlite for postgres, a `file` directory for an http
    /// source), and without a password (secrets come from the environment).
    pub(super) fn standalone_uri(&mut self, uri: &Sp<String>, declared: ConnType, id: &str) -> bool {
        let w = format!("connection `{id}`");
        let Some((scheme, rest)) = uri.value.split_once("://") else {
            let hint = "write a URI such as `sqlite://app.sqlite` or `file://data/sample`".to_string();
            self.error("invalid-value", uri.span, format!("`standalone` of {w} is not a `type://…` URI"), Some(hint));
            return false;
        };
        let scheme = scheme.to_ascii_lowercase();
        let name = match scheme.as_str() {
            "postgresql" => "postgres",
            "https" => "http",
            other => other,
        };
        let Some((_, ty)) = ConnType::ALL.iter().find(|(n, _)| *n == name) else {
            let names = ConnType::ALL.iter().map(|(n, _)| *n);
            let hint = suggestion(name, names.clone())
                .unwrap_or_else(|| format!("known types: {}", names.collect::<Vec<_>>().join(", ")));
            self.error(
                "unknown-type",
                uri.span,
                format!("`standalone` of {w} has unknown connection type `{scheme}`"),
                Some(hint),
            );
            return false;
        };
        let compatible = *ty == declared
            || (declared == ConnType::Postgres && *ty == ConnType::Sqlite)
            || (declared == ConnType::Http && *ty == ConnType::File);
        if !compatible {
            let hint = match declared {
                ConnType::Postgres => {
                    "a postgres connection stands in as `postgres://…` or `sqlite://file.sqlite`".into()
                }
                ConnType::Http => "an http connection stands in as `http://…` or a local directory `file://dir`".into(),
                other => format!("a {0} connection stands in only as `{0}://…`", other.name()),
            };
            self.error(
                "wrong-connection-type",
                uri.span,
                format!(
                    "`standalone` of {w} is a {} connection, but the connection is of type {}",
                    ty.name(),
                    declared.name()
                ),
                Some(hint),
            );
            return false;
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if *ty != ConnType::File
            && let Some((userinfo, _)) = authority.rsplit_once('@')
            && userinfo.contains(':')
        {
            let env = format!("{}{}", sluice_contract::settings::CONN_PREFIX, id.to_uppercase());
            self.error(
                "literal-secret",
                uri.span,
                format!("`standalone` of {w} holds a password; secrets must come from the environment"),
                Some(format!("drop the password from the URI and set {env} in the environment instead")),
            );
            return false;
        }
        true
    }
}
